"""Slots from the EHR's schedule feed: an SIU^S15 at an integrated provider is offered by the
ingest run that applies it, to connections with an MRN only; an SIU^S12 booking that time
closes it (`booked_in_ehr`) and withdraws what was not sent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from openslots import api
from openslots.connectors.database.models import Location, OutboxMessage, Provider, Slot
from openslots.domain.clock import frozen_clock
from openslots.domain.statuses import ConnectionStatus
from openslots.tasks.hl7 import ingest_stored, store_files
from tests import hl7_messages as m
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_open_slots import add, explained, offers

# The feed's own time (MSH-7), days before the appointments it moves.
FEED_TIME = dt.datetime(2026, 11, 26, 17, 40, tzinfo=dt.UTC)


def feed(tmp_path: Path, name: str, *messages: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\r".join(x.encode() for x in messages))
    store_files.fn([str(path)])
    ingest_stored.fn()


def first_booking(db: Engine, tmp_path: Path) -> tuple[str, str]:
    """A first booking creates the integrated provider and location the feed names."""
    feed(tmp_path, "other.hl7", m.siu("S12", "APT0", "202612011500", "SIU-0"))
    with db.connect() as conn:
        provider, location = conn.execute(
            select(Provider.name, Location.name).join(Location, Location.provider_id == Provider.id)
        ).one()
    return str(provider), str(location)


def test_s15_offers_connections_with_an_mrn_and_s12_withdraws_unsent_offers(
    db: Engine, tmp_path: Path
) -> None:
    with frozen_clock(FEED_TIME):
        provider, location = first_booking(db, tmp_path)
        with_mrn = add(db, 1, mrn="M1", provider=provider, location=location)
        without_mrn = add(db, 2, provider=provider, location=location)
        paused = add(db, 3, mrn="M3", status=ConnectionStatus.PAUSED, provider=provider,
                     location=location)  # fmt: skip
        feed(tmp_path, "cancel.hl7", m.SIU_S15_CANCELLED)
        with db.connect() as conn:
            slot_id, status, starts_at = conn.execute(
                select(Slot.id, Slot.status, Slot.starts_at).where(Slot.filler_id == "APT1")
            ).one()
        assert status == "open"
        # 202612011000 at a location without a zone: New York wall time (EST).
        assert starts_at.replace(tzinfo=None) == dt.datetime(2026, 12, 1, 15, 0)
        assert offers(db, slot_id) == {with_mrn: ("sent", 0)}
        with db.connect() as conn:
            queued = dict(
                conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)).all()
            )
        assert queued == {"offer:1:email": "pending", "offer:1:sms": "pending"}
        assert explained(slot_id) == {
            with_mrn: ("alerted", "eligible"),
            without_mrn: ("not_alerted", "no_mrn"),
            paused: ("not_alerted", "paused"),
        }
        # The practice books the time in the EHR before dispatch ran: nothing goes out.
        feed(tmp_path, "book.hl7", m.siu("S12", "APT1", "202612011000", "SIU-7"))
        listed = {s["id"]: s for s in api.list_slots(provider=provider)}
        assert (listed[slot_id]["status"], listed[slot_id]["closed_reason"]) == (
            "closed",
            "booked_in_ehr",
        )
        with db.connect() as conn:
            statuses = set(conn.execute(select(OutboxMessage.status)).scalars())
        assert statuses == {"cancelled"}


def test_an_old_or_replayed_s15_is_recorded_closed_and_offered_to_no_one(
    db: Engine, tmp_path: Path
) -> None:
    with frozen_clock(dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)):  # 09:00 in New York
        feed(tmp_path, "cancel.hl7", m.SIU_S15_CANCELLED)  # 10:00: inside the lead time
        with db.connect() as conn:
            status, reason = conn.execute(select(Slot.status, Slot.closed_reason)).one()
            sent = conn.execute(select(OutboxMessage.id)).all()
    assert (status, reason, sent) == ("closed", "lead_time", [])


def test_the_feed_shows_only_the_visit_types_the_practice_chose(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    # AIS-3 of the test feed is CHECKUP^Checkup: shown as the practice's words, when mapped.
    monkeypatch.setenv("OPENSLOTS_ALERT_VISIT_TYPES", '{"CHECKUP": "Routine check-up"}')
    with frozen_clock(FEED_TIME):
        provider, location = first_booking(db, tmp_path)
        add(db, 1, mrn="M1", provider=provider, location=location)
        feed(tmp_path, "cancel.hl7", m.SIU_S15_CANCELLED)
        dispatch_now()
        monkeypatch.setenv("OPENSLOTS_ALERT_VISIT_TYPES", '{"NP30": "New patient"}')
        feed(tmp_path, "deleted.hl7", m.SIU_S17_DELETED)  # CHECKUP no longer listed
    with db.connect() as conn:
        shown = dict(conn.execute(select(Slot.filler_id, Slot.visit_type)).all())
    assert shown == {"APT0": None, "APT1": "Routine check-up", "APT2": None}
    alert = (isolated_env / "outbox" / "email" / "offer_1_email.eml").read_text()
    assert "30 minutes (Routine check-up)." in alert and "Checkup" not in alert
