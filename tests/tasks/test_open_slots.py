"""Open Slots on SQLite and PostgreSQL with a frozen, moved clock: Blast and Serial offers, the
lead time, quiet hours across a DST change, claims (first wins, forged, expired), closing, the
schedule feed, and `explain` for every reason code."""

from __future__ import annotations

import datetime as dt
import email
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, select

from openslots import api
from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.models import Channel, Offer, OptOut, OutboxMessage, Slot
from openslots.connectors.database.roster import ensure_target
from openslots.domain.clock import FrozenClock, frozen_clock
from openslots.domain.statuses import ConnectionStatus
from openslots.domain.tokens import make_token
from openslots.resources import resources
from tests.tasks._dispatch import dispatch_now

PROVIDER, LOCATION = "Dr. Slot", "Main"
# Noon in New York on a Tuesday: outside the alert quiet hours.
NOON = dt.datetime(2030, 3, 5, 17, 0, tzinfo=dt.UTC)
TOMORROW_10 = "2030-03-06T10:00"  # New York wall time: 15:00 UTC


@pytest.fixture
def clock(db: Engine) -> Iterator[FrozenClock]:
    with frozen_clock(NOON) as frozen:
        yield frozen


def add(
    db: Engine,
    n: int,
    *,
    status: ConnectionStatus = ConnectionStatus.APPROVED,
    location: str = LOCATION,
    phone: bool = True,
    mrn: str | None = None,
    integrated: bool = False,
    provider: str = PROVIDER,
) -> int:
    with db.begin() as conn:
        target = ensure_target(conn, provider, location, integrated=integrated, create=True)
        return add_connection(
            conn,
            provider_id=target.provider_id,
            location_id=target.location_id,
            first_name=f"Pat{n}",
            last_name="Example",
            date_of_birth=dt.date(1980, 1, 1) + dt.timedelta(days=n),
            email=f"pat{n}@example.org",
            mobile_phone=f"+1415555{n:04d}" if phone else None,
            status=status,
            mrn=mrn,
        )


def offers(db: Engine, slot_id: int) -> dict[int, tuple[str, int]]:
    """connection id -> (state, group)."""
    with db.connect() as conn:
        rows = conn.execute(
            select(Offer.connection_id, Offer.state, Offer.group_number).where(
                Offer.slot_id == slot_id
            )
        )
        return {r.connection_id: (str(r.state), r.group_number) for r in rows}


def messages(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        rows = conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status))
        return {key: str(status) for key, status in rows}


def token_for(db: Engine, slot_id: int, connection_id: int) -> str:
    """The claim token the dispatcher puts in this connection's link."""
    with db.connect() as conn:
        offer_id, starts_at = conn.execute(
            select(Offer.id, Slot.starts_at)
            .join(Slot, Slot.id == Offer.slot_id)
            .where(Offer.slot_id == slot_id, Offer.connection_id == connection_id)
        ).one()
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    return make_token(resources().secret_key(), "claim", offer_id, starts_at)


def explained(slot_id: int) -> dict[int, tuple[str, str]]:
    return {r["connection_id"]: (r["outcome"], r["reason"]) for r in api.explain_slot(slot_id)}


def test_blast_offers_everyone_at_once_and_the_first_claim_wins(
    db: Engine, clock: FrozenClock, isolated_env: Path
) -> None:
    with_phone, without_phone = add(db, 1), add(db, 2, phone=False)
    opened = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, visit_type="Checkup")
    assert opened == {
        "slot_id": 1,
        "mode": "blast",
        "eligible": 2,
        "alerts_queued": 2,
        "status": "open",
    }
    assert messages(db) == {
        "offer:1:email": "pending",
        "offer:1:sms": "pending",
        "offer:2:email": "pending",
    }
    # Opening again is idempotent per slot: nothing is queued twice.
    assert dispatch_now().sent == 3
    assert set(messages(db).values()) == {"sent"}
    # The link in the email is the one that claims.
    raw = (isolated_env / "outbox" / "email" / "offer_1_email.eml").read_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    part = cast(EmailMessage, parsed).get_body(preferencelist=("plain",))
    assert part is not None
    body: Any = part.get_content()
    assert "Wed 6 Mar 2030, 10:00 AM" in body
    token = re.search(r"/claim/([A-Za-z0-9_.-]+)", body)
    assert token is not None
    assert api.claim_slot(token.group(1)) == {"slot_id": 1, "result": "won"}
    assert api.claim_slot(token.group(1)) == {"slot_id": 1, "result": "won"}  # idempotent
    other = token_for(db, 1, without_phone)
    assert api.claim_slot(other) == {"slot_id": 1, "result": "taken"}
    assert explained(1) == {
        with_phone: ("claimed", "eligible"),
        without_phone: ("alerted", "eligible"),
    }
    listed = api.list_slots(status="claimed", provider=PROVIDER)
    assert [
        (s["id"], s["offers_sent"], s["claims_tried"], s["winner_connection_id"]) for s in listed
    ] == [(1, 2, 3, with_phone)]


def test_serial_offers_one_group_per_timeout_across_separate_dispatch_runs(
    db: Engine, clock: FrozenClock
) -> None:
    ids = [add(db, n) for n in range(1, 6)]
    # The practice's order: the last added first; Priority labels play no part.
    for place, connection_id in enumerate(reversed(ids)):
        api.set_alert_order(connection_id, place)
    api.set_priority(ids[0], "High", "test")
    opened = api.open_slot(
        PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", group_size=2, timeout_minutes=30
    )
    assert (opened["eligible"], opened["alerts_queued"]) == (5, 2)
    sent = lambda: {c for c, (state, _) in offers(db, 1).items() if state == "sent"}  # noqa: E731
    assert sent() == {ids[4], ids[3]}
    clock.advance(dt.timedelta(minutes=29))
    dispatch_now()  # a restart: a new run, nothing waits in memory
    assert sent() == {ids[4], ids[3]}
    clock.advance(dt.timedelta(minutes=1))
    dispatch_now()
    assert sent() == {ids[4], ids[3], ids[2], ids[1]}
    assert explained(1)[ids[0]] == ("not_alerted", "serial_not_reached")
    assert api.claim_slot(token_for(db, 1, ids[2]))["result"] == "won"
    clock.advance(dt.timedelta(minutes=30))
    dispatch_now()
    assert offers(db, 1)[ids[0]] == ("withdrawn", 2)
    assert explained(1)[ids[0]] == ("not_alerted", "slot_closed")
    assert explained(1)[ids[2]] == ("claimed", "eligible")


def test_lead_time_at_opening_and_the_cutoff_while_open(db: Engine, clock: FrozenClock) -> None:
    first = add(db, 1)
    soon = (NOON + dt.timedelta(minutes=119)).isoformat()
    late = api.open_slot(PROVIDER, LOCATION, soon, 30)
    assert late == {
        "slot_id": 1,
        "mode": "blast",
        "eligible": 0,
        "alerts_queued": 0,
        "status": "closed",
    }
    assert explained(1) == {first: ("not_alerted", "lead_time")}
    assert api.list_slots(status="closed")[0]["closed_reason"] == "lead_time"
    # Serial: the second connection's turn comes after the cutoff, so it never comes.
    second = add(db, 2)
    in_three_hours = (NOON + dt.timedelta(hours=3)).isoformat()
    api.open_slot(PROVIDER, LOCATION, in_three_hours, 30, mode="serial", timeout_minutes=90)
    clock.advance(dt.timedelta(minutes=61))
    dispatch_now()
    assert api.close_slot(2)["status"] == "closed"
    assert api.list_slots(status="closed")[0]["closed_reason"] == "lead_time"
    assert explained(2) == {first: ("alerted", "eligible"), second: ("not_alerted", "slot_closed")}
    assert api.claim_slot(token_for(db, 2, first))["result"] == "closed"


def test_quiet_hours_wait_for_the_morning_across_the_dst_change(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New York springs forward on 10 March 2030: the morning of 08:00 EDT is 12:00 UTC, an
    hour earlier in UTC than the 13:00 the evening before (EST) would suggest."""
    monkeypatch.setenv("OPENSLOTS_ALERT_QUIET_HOURS", "21:00-08:00")
    first = add(db, 1)
    evening = dt.datetime(2030, 3, 10, 3, 0, tzinfo=dt.UTC)  # 22:00 EST on 9 March
    with frozen_clock(evening) as clock:
        waits = api.open_slot(PROVIDER, LOCATION, "2030-03-10T14:00", 30)
        skipped = api.open_slot(PROVIDER, LOCATION, "2030-03-10T09:30", 30)
        assert (waits["alerts_queued"], skipped["alerts_queued"]) == (0, 0)
        assert explained(waits["slot_id"]) == {first: ("not_alerted", "quiet_hours")}
        assert explained(skipped["slot_id"]) == {first: ("not_alerted", "quiet_hours")}
        assert offers(db, skipped["slot_id"]) == {first: ("skipped", 0)}
        clock.set(dt.datetime(2030, 3, 10, 11, 59, tzinfo=dt.UTC))
        dispatch_now()
        assert offers(db, waits["slot_id"]) == {first: ("pending", 0)}
        clock.set(dt.datetime(2030, 3, 10, 12, 0, tzinfo=dt.UTC))  # 08:00 EDT
        assert dispatch_now().sent == 2
        assert offers(db, waits["slot_id"]) == {first: ("sent", 0)}
        assert explained(waits["slot_id"]) == {first: ("alerted", "eligible")}


def test_explain_names_every_eligibility_reason(db: Engine, clock: FrozenClock) -> None:
    integrated = "Dr. Integrated"
    kinds = {
        "eligible": add(db, 1, mrn="M1", integrated=True, provider=integrated),
        "not_approved": add(db, 2, status=ConnectionStatus.PENDING, provider=integrated),
        "paused": add(db, 3, status=ConnectionStatus.PAUSED, provider=integrated),
        "declined": add(db, 4, status=ConnectionStatus.DECLINED, provider=integrated),
        "no_mrn": add(db, 5, provider=integrated),
        "opted_out": add(db, 6, mrn="M6", provider=integrated),
        "other_location": add(db, 7, mrn="M7", location="North", provider=integrated),
    }
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert().values(
                provider_id=1, channel=Channel.EMAIL, address="pat6@example.org"
            )
        )
    opened = api.open_slot(integrated, LOCATION, TOMORROW_10, 30)
    assert (opened["eligible"], opened["alerts_queued"]) == (1, 1)
    reasons = explained(opened["slot_id"])
    assert {kind: reasons[cid] for kind, cid in kinds.items()} == {
        "eligible": ("alerted", "eligible"),
        "not_approved": ("not_alerted", "not_approved"),
        "paused": ("not_alerted", "paused"),
        "declined": ("not_alerted", "declined"),
        "no_mrn": ("not_alerted", "no_mrn"),
        "opted_out": ("not_alerted", "opted_out"),
        "other_location": ("not_alerted", "other_location"),
    }


def test_forged_altered_and_expired_tokens_are_refused(db: Engine, clock: FrozenClock) -> None:
    first = add(db, 1)
    api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    token = token_for(db, 1, first)
    forged = make_token("x" * 32, "claim", 1, NOON + dt.timedelta(days=2))
    assert api.claim_slot(forged) == {"slot_id": None, "result": "invalid"}
    assert api.claim_slot(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))["result"] == (
        "invalid"
    )
    assert api.claim_slot("not-a-token")["result"] == "invalid"
    unsubscribe = make_token(resources().secret_key(), "unsubscribe", 1, NOON + dt.timedelta(1))
    assert api.claim_slot(unsubscribe)["result"] == "invalid"
    clock.set(dt.datetime(2030, 3, 6, 15, 0, tzinfo=dt.UTC))  # the slot's start
    assert api.claim_slot(token) == {"slot_id": None, "result": "expired"}


def test_closing_withdraws_unsent_offers_and_messages(db: Engine, clock: FrozenClock) -> None:
    first, second = add(db, 1), add(db, 2)
    api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=10)
    assert api.close_slot(1) == {
        "slot_id": 1,
        "closed": True,
        "status": "closed",
        "closed_reason": "staff",
    }
    assert offers(db, 1) == {first: ("sent", 0), second: ("withdrawn", 1)}
    assert set(messages(db).values()) == {"cancelled"}  # queued, never handed to a sender
    assert dispatch_now().sent == 0
    assert api.close_slot(1)["closed"] is False
    with pytest.raises(api.NotFoundError):
        api.close_slot(99)


def test_offering_again_queues_nothing_twice(db: Engine, clock: FrozenClock) -> None:
    from openslots.connectors.database import slots as slot_repo
    from openslots.tasks.offers import offer_due

    add(db, 1), add(db, 2)
    api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=5)
    before = (offers(db, 1), messages(db))
    settings = resources().settings
    for _ in range(2):  # a second writer, and a replay of the same step
        with db.begin() as conn:
            assert (
                slot_repo.offer_slot(
                    conn,
                    1,
                    clock.now(),
                    max_per_week=settings.alert_max_per_week,
                    default_timezone=settings.default_timezone,
                )
                == 2
            )
        assert offer_due(db, settings, clock.now()).messages == 0
    assert (offers(db, 1), messages(db)) == before
    clock.advance(dt.timedelta(minutes=5))
    assert offer_due(db, settings, clock.now()).offers_sent == 1
    assert offer_due(db, settings, clock.now()).offers_sent == 0
    assert len(messages(db)) == 4
