"""What a feed may and may not do to providers (issue 8.7, 8.8): a provider a feed creates is
EHR-integrated and fed by it; an existing one is never flipped by a message; an A40 merge
rewrites MRNs only at the providers of the feed that sent it. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from openslots.connectors.database import provider_admin
from openslots.connectors.database.models import AuditEvent, Location, Provider, Slot
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.clock import frozen_clock
from openslots.tasks.hl7 import ingest_stored, store_files
from tests import hl7_messages as m
from tests.factories import connection, person
from tests.tasks.test_hl7_ingest import drop
from tests.tasks.test_open_slots_feed import FEED_TIME

RIVERA = "Maria Rivera (D77)"  # what EPIC_A04's PV1-7 names


def run(tmp_path: Path, name: str, *messages: str):
    store_files.fn([drop(tmp_path, name, *messages)])
    return ingest_stored.fn()


def providers(db: Engine) -> dict[str, tuple[bool, str | None, str | None]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(
                Provider.name,
                Provider.integrated,
                Provider.feed_application,
                Provider.feed_facility,
            )
        )
        return {name: (bool(i), app, fac) for name, i, app, fac in rows}


def test_a_feed_creates_integrated_providers_fed_by_it(db: Engine, tmp_path: Path) -> None:
    counts = run(tmp_path, "a.hl7", m.EPIC_A04)
    assert (counts.applied, counts.providers_created) == (1, 1)
    assert counts.providers_not_integrated == []
    assert providers(db) == {RIVERA: (True, "EPIC", "NORTHCLINIC")}


def test_a_message_never_flips_an_existing_provider_and_says_so_once(
    db: Engine, tmp_path: Path
) -> None:
    connection(db, RIVERA, "Main", person(1), mrn=None)  # the practice's, not integrated
    second = m.EPIC_A04.replace("EPC0001", "EPC0002").replace("E1001", "E1002")
    second = second.replace("Inés", "Ana").replace("ines.n@", "ana.n@")
    counts = run(tmp_path, "a.hl7", m.EPIC_A04, second)
    assert (counts.applied, counts.providers_created) == (2, 0)
    assert counts.providers_not_integrated == [RIVERA]  # once for the batch, not per message
    assert providers(db) == {RIVERA: (False, None, None)}  # neither flipped nor claimed
    with db.connect() as conn:
        assert conn.execute(select(AuditEvent.id)).first() is None
    # The schedule feed names it too (AIP-3): still not flipped, said once more.
    with frozen_clock(FEED_TIME):
        schedule = run(tmp_path, "s.hl7", m.SIU_S15_CANCELLED)
    assert (schedule.applied, schedule.providers_not_integrated) == (1, [RIVERA])
    assert providers(db) == {RIVERA: (False, None, None)}


def test_a40_rewrites_mrns_only_at_the_providers_of_the_feed_that_sent_it(
    db: Engine, tmp_path: Path
) -> None:
    run(tmp_path, "a.hl7", m.EPIC_A04)  # creates RIVERA, fed by EPIC^NORTHCLINIC
    ours = connection(db, RIVERA, "CARDIO", person(1), mrn="M5999")
    # Another EHR's provider whose own MRN happens to be the same string.
    theirs = connection(db, "Dr. South", "Ward", person(2), mrn="M5999", integrated=True)
    with db.begin() as conn:
        conn.execute(
            Provider.__table__.update()
            .where(Provider.name == "Dr. South")
            .values(feed_application="CERNER", feed_facility="SOUTHHOSP")
        )
    # A provider from before feeds were recorded takes merges from any feed (README).
    legacy = connection(db, "Dr. Legacy", "Main", person(3), mrn="M5999")
    counts = run(tmp_path, "merge.hl7", m.MERGE_A40)
    assert (counts.applied, counts.merges_unmatched) == (1, 0)
    with db.connect() as conn:
        mrns = dict(conn.execute(select(ConnectionRow.id, ConnectionRow.mrn)).all())
    assert (mrns[ours], mrns[theirs], mrns[legacy]) == ("M5005", "M5999", "M5005")

    nothing = m.MERGE_A40.replace("EPC0040", "EPC0041").replace("M5999", "M0000")
    assert run(tmp_path, "none.hl7", nothing).merges_unmatched == 1


def test_a_merged_providers_feed_slots_are_found_by_the_schedule_feed_afterwards(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot key names provider and location: a merge rewrites it for the target."""
    with frozen_clock(FEED_TIME):
        assert run(tmp_path, "cancel.hl7", m.SIU_S15_CANCELLED).slots_opened == 1
        with db.connect() as conn:
            location = conn.execute(select(Location.name)).scalar_one()
        connection(db, "Dr. Rivera", location, person(1))  # the practice's own provider
        with db.begin() as conn:
            merged = provider_admin.merge(conn, RIVERA, "Dr. Rivera", "desk")
        assert (merged["slots_moved"], merged["locations_merged"]) == (1, 1)
        # The EHR books the appointment again; here its messages name the practice's provider.
        monkeypatch.setenv("OPENSLOTS_HL7_DEFAULT_PROVIDER", "Dr. Rivera")
        booked = "\r".join(s for s in m.SIU_S12_BOOKED.split("\r") if not s.startswith("AIP"))
        assert run(tmp_path, "book.hl7", booked.replace("SIU-1", "SIU-77")).slots_filled == 1
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Slot)).scalar_one() == 1
