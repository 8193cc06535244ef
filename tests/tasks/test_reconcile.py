"""A claimed slot reconciled into the EHR's calendar (issue #15), on SQLite and PostgreSQL: by a
scheduler (audited), by an SIU^S12 for the winner's MRN (`hl7`); an S12 for another patient at
a claimed slot's time is a conflict, never applied over the claim; `--unreconciled` over a
moved clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from openslots import api
from openslots.connectors.database.models import Location, Provider, Slot
from openslots.domain.clock import frozen_clock
from openslots.errors import OpenslotsError
from tests import hl7_messages as m
from tests.tasks.test_open_slots import LOCATION, PROVIDER, TOMORROW_10, add, token_for
from tests.tasks.test_open_slots_feed import FEED_TIME, feed

NOON = dt.datetime(2030, 3, 5, 17, 0, tzinfo=dt.UTC)


def with_patient(message: str, mrn: str) -> str:
    """An SIU with its PID segment (after SCH, as SIU^S12 orders them), naming `mrn` as MR."""
    segments = message.split("\r")
    return "\r".join([*segments[:2], f"PID|1||{mrn}^^^NORTH^MR||Doe^Jane||19800101", *segments[2:]])


def claimed_slot(db: Engine, start: str = TOMORROW_10) -> tuple[int, int]:
    """(slot id, winner's connection id) of a slot opened (at NOON unless told) and won."""
    winner = add(db, 1)
    opened = api.open_slot(PROVIDER, LOCATION, start, 30)
    assert api.claim_slot(token_for(db, opened["slot_id"], winner))["result"] == "won"
    return opened["slot_id"], winner


def listed(**flags: bool) -> list[int]:
    return [s["id"] for s in api.list_slots(**flags)]


def test_a_scheduler_reconciles_once_and_it_is_audited(db: Engine) -> None:
    with frozen_clock(NOON) as clock:
        slot_id, _ = claimed_slot(db)
        clock.advance(dt.timedelta(hours=1))
        first = api.reconcile_slot(slot_id, "scheduler-ann")
        assert first == {
            "slot_id": slot_id,
            "changed": True,
            "reconciled_at": "2030-03-05T18:00:00+00:00",
            "reconciled_by": "scheduler-ann",
        }
        clock.advance(dt.timedelta(hours=1))
        again = api.reconcile_slot(slot_id, "someone-else")
        assert again == first | {"changed": False}  # the first record stands
    [row] = api.list_slots(status="claimed")
    assert (row["reconciled_at"], row["reconciled_by"]) == (
        "2030-03-05T18:00:00+00:00",
        "scheduler-ann",
    )
    events = api.audit_events("slot", slot_id)
    assert [(e["action"], e["actor"], e["to"]) for e in events] == [
        ("reconciled", "scheduler-ann", "reconciled")
    ]


def test_only_a_claimed_slot_can_be_reconciled(db: Engine) -> None:
    with frozen_clock(NOON):
        add(db, 1)
        opened = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
        with pytest.raises(OpenslotsError, match=r"only a claimed slot .* is open"):
            api.reconcile_slot(opened["slot_id"], "x")
        with pytest.raises(OpenslotsError, match="no slot 99"):
            api.reconcile_slot(99, "x")


def test_unreconciled_lists_a_claim_once_the_hours_have_passed(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with frozen_clock(NOON) as clock:
        slot_id, _ = claimed_slot(db)
        clock.advance(dt.timedelta(hours=3, minutes=59))
        assert listed(unreconciled=True) == []
        clock.advance(dt.timedelta(minutes=1))
        assert listed(unreconciled=True) == [slot_id]
        monkeypatch.setenv("OPENSLOTS_RECONCILE_AFTER_HOURS", "5")
        assert listed(unreconciled=True) == []
        monkeypatch.delenv("OPENSLOTS_RECONCILE_AFTER_HOURS")
        api.reconcile_slot(slot_id, "scheduler")
        assert listed(unreconciled=True) == []


def _feed_claimed_slot(db: Engine, tmp_path: Path) -> tuple[int, int]:
    """A slot the feed opened (S15) at an integrated provider, won by the connection with MRN
    M1 (the feed's provider and location)."""
    feed(tmp_path, "first.hl7", m.siu("S12", "APT0", "202612011500", "SIU-0"))
    with db.connect() as conn:
        provider, location = conn.execute(
            select(Provider.name, Location.name).join(Location, Location.provider_id == Provider.id)
        ).one()
    winner = add(db, 1, mrn="M1", provider=provider, location=location)
    feed(tmp_path, "cancel.hl7", m.SIU_S15_CANCELLED)
    with db.connect() as conn:
        slot_id = conn.execute(select(Slot.id).where(Slot.filler_id == "APT1")).scalar_one()
    assert api.claim_slot(token_for(db, slot_id, winner))["result"] == "won"
    return slot_id, winner


def test_an_s12_for_the_winner_reconciles_the_slot(db: Engine, tmp_path: Path) -> None:
    with frozen_clock(FEED_TIME):
        slot_id, winner = _feed_claimed_slot(db, tmp_path)
        booked = with_patient(m.siu("S12", "APT9", "202612011000", "SIU-9"), "M1")
        feed(tmp_path, "booked.hl7", booked)
    rows = {s["id"]: s for s in api.list_slots()}
    assert rows[slot_id]["status"] == "claimed"
    assert rows[slot_id]["winner_connection_id"] == winner
    assert rows[slot_id]["reconciled_by"] == "hl7"
    assert rows[slot_id]["conflict_at"] is None
    assert listed(conflicts=True) == []


def test_an_s12_for_someone_else_on_a_claimed_slot_is_a_conflict(
    db: Engine, tmp_path: Path
) -> None:
    with frozen_clock(FEED_TIME):
        slot_id, winner = _feed_claimed_slot(db, tmp_path)
        other = with_patient(m.siu("S12", "APT8", "202612011000", "SIU-8"), "M9")
        feed(tmp_path, "other.hl7", other)
        feed(tmp_path, "again.hl7", other)  # a redelivery records nothing new
    [row] = api.list_slots(conflicts=True)
    assert row["id"] == slot_id
    # Reported, never applied: still claimed by the winner, not reconciled.
    assert (row["status"], row["winner_connection_id"], row["reconciled_at"]) == (
        "claimed",
        winner,
        None,
    )
    assert row["conflict_at"] is not None and row["conflict_message_id"] is not None
    with db.connect() as conn:
        same_time = conn.execute(
            select(Slot.status, Slot.closed_reason).where(Slot.filler_id == "APT8")
        ).one()
    assert tuple(same_time) == ("closed", "booked_in_ehr")  # the EHR's own booking is recorded
