"""What a claim owes and what patients do with an offer, on SQLite and PostgreSQL: the winner's
confirmation and the others' "no longer available" (only to those whose alert went out), the
practice's switch for the latter, "Not for me" (final, idempotent, a Serial slot moves on at
once, `no_one_left`), the beacon's `viewed`, and `slots decline` from the CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots import api
from openslots.cli import app
from openslots.domain.clock import FrozenClock, frozen_clock
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_open_slots import (
    LOCATION,
    NOON,
    PROVIDER,
    TOMORROW_10,
    add,
    explained,
    messages,
    offers,
    token_for,
)


@pytest.fixture
def clock(db: Engine) -> Iterator[FrozenClock]:
    with frozen_clock(NOON) as frozen:
        yield frozen


def listed(slot_id: int) -> dict[str, object]:
    return next(s for s in api.list_slots() if s["id"] == slot_id)


def test_the_winner_is_confirmed_and_those_sent_the_offer_hear_it_is_taken(
    db: Engine, clock: FrozenClock, isolated_env: Path
) -> None:
    winner, other, quiet = add(db, 1), add(db, 2, phone=False), add(db, 3)
    slot_id = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"]
    dispatch_now()
    assert api.decline_offer(token_for(db, slot_id, quiet))["result"] == "declined"
    assert api.claim_slot(token_for(db, slot_id, winner))["result"] == "won"
    owed = {k: v for k, v in messages(db).items() if ":confirmation:" in k or ":unavail" in k}
    assert owed == {
        "offer:1:confirmation:email": "pending",
        "offer:1:confirmation:sms": "pending",
        "offer:2:unavailable:email": "pending",  # who declined is not told again
    }
    counts = dispatch_now()
    assert counts.sent == 3 and counts.materialised == 0  # nothing owed twice
    assert {messages(db)[k] for k in owed} == {"sent"}
    confirmation = isolated_env / "outbox" / "email" / "offer_1_confirmation_email.eml"
    assert "is yours" in confirmation.read_text()
    taken = (isolated_env / "outbox" / "email" / "offer_2_unavailable_email.eml").read_text()
    assert "no longer available" in taken and "Pat1" not in taken
    assert api.claim_slot(token_for(db, slot_id, other))["result"] == "taken"
    assert dispatch_now().materialised == 0


def test_offers_never_sent_get_nothing_and_the_practice_may_keep_quiet(
    db: Engine, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = add(db, 1, phone=False), add(db, 2, phone=False), add(db, 3)
    unsent = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"]
    # Claimed before dispatch sent anything: the others' alerts are cancelled, never "taken".
    assert api.claim_slot(token_for(db, unsent, first))["result"] == "won"
    assert {k: v for k, v in messages(db).items() if k.startswith(("offer:2:", "offer:3:"))} == {
        "offer:2:email": "cancelled",
        "offer:3:email": "cancelled",
        "offer:3:sms": "cancelled",
    }
    assert "offer:1:confirmation:email" in messages(db)
    monkeypatch.setenv("OPENSLOTS_ALERT_NOTIFY_TAKEN", "false")
    sent = api.open_slot(PROVIDER, LOCATION, "2030-03-06T11:00", 30)["slot_id"]
    dispatch_now()
    assert api.claim_slot(token_for(db, sent, second))["result"] == "won"
    dispatch_now()
    assert not [k for k in messages(db) if ":unavailable:" in k]
    assert {k for k in messages(db) if ":confirmation:" in k} == {
        "offer:1:confirmation:email",
        "offer:5:confirmation:email",
    }
    assert third  # alerted for both, told of neither


def test_a_serial_decline_offers_the_next_group_at_once_until_no_one_is_left(
    db: Engine, clock: FrozenClock
) -> None:
    ids = [add(db, i) for i in (1, 2, 3)]
    opened = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=60)
    slot_id = opened["slot_id"]
    assert [offers(db, slot_id)[c][0] for c in ids] == ["sent", "pending", "pending"]
    clock.advance(dt.timedelta(minutes=5))
    first = token_for(db, slot_id, ids[0])
    assert api.decline_offer(first) == {"slot_id": slot_id, "result": "declined"}
    # No waiting out the hour: the second is offered now, the third keeps its gap.
    assert [offers(db, slot_id)[c][0] for c in ids] == ["sent", "sent", "pending"]
    assert "offer:2:email" in messages(db)
    assert api.decline_offer(first)["result"] == "declined"  # idempotent
    assert api.claim_slot(first) == {"slot_id": slot_id, "result": "declined"}  # final
    assert explained(slot_id)[ids[0]] == ("declined", "declined_offer")
    assert listed(slot_id)["no_one_left"] is False
    assert api.decline_offer(token_for(db, slot_id, ids[1]))["result"] == "declined"
    assert api.decline_offer(token_for(db, slot_id, ids[2]))["result"] == "declined"
    state = listed(slot_id)
    assert (state["status"], state["declined"], state["no_one_left"]) == ("open", 3, True)
    assert (state["offers_sent"], state["claims_tried"]) == (3, 0)
    assert api.decline_offer("forged.token") == {"slot_id": None, "result": "invalid"}


def test_a_decline_after_the_slot_was_claimed_says_nothing_of_others(
    db: Engine, clock: FrozenClock
) -> None:
    winner, other = add(db, 1), add(db, 2)
    slot_id = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"]
    assert api.claim_slot(token_for(db, slot_id, winner))["result"] == "won"
    assert api.decline_offer(token_for(db, slot_id, other))["result"] == "declined"
    assert api.decline_offer(token_for(db, slot_id, winner))["result"] == "won"  # kept
    assert listed(slot_id)["status"] == "claimed"
    assert explained(slot_id) == {
        winner: ("claimed", "eligible"),
        other: ("declined", "declined_offer"),
    }


def test_the_beacon_marks_viewed_once(db: Engine, clock: FrozenClock) -> None:
    first, _ = add(db, 1), add(db, 2)
    slot_id = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"]
    token = token_for(db, slot_id, first)
    assert api.offer_page(token)["state"] == "claimable"  # showing the page changes nothing
    assert listed(slot_id)["viewed"] == 0
    assert api.mark_offer_viewed(token) == {"slot_id": slot_id, "viewed": True}
    assert api.mark_offer_viewed(token) == {"slot_id": slot_id, "viewed": True}
    assert listed(slot_id)["viewed"] == 1


def test_slots_decline_from_the_cli(db: Engine, clock: FrozenClock) -> None:
    runner = CliRunner()
    first = add(db, 1)
    slot_id = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"]
    token = token_for(db, slot_id, first)
    for _ in range(2):
        result = runner.invoke(app, ["slots", "decline", token, "--json"])
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"slot_id": slot_id, "result": "declined"}
    result = runner.invoke(app, ["slots", "decline", "forged.token", "--json"])
    assert (result.exit_code, json.loads(result.stdout)["result"]) == (1, "invalid")
    result = runner.invoke(app, ["slots", "list", "--json"])
    assert json.loads(result.stdout)[0]["declined"] == 1
