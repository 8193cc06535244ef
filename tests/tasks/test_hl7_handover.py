"""A file drop hands what its receipt read and checked to the ingest of the same run
(`Receipts`): applying with the readings must leave exactly what reading every message again
leaves (statuses, errors, findings and their order, patients, connections, invitations, batch
counts). SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchmarks.hl7_ingest import generate_messages
from openslots.connectors.database.models import Base
from openslots.domain.clock import frozen_clock
from openslots.tasks.hl7 import ingest_stored, store_files
from openslots.tasks.hl7_receive import RECEIPTS, Reading, Receipts, StoreThenAck, content_hash
from tests import hl7_messages as m

# What the two runs are compared on: natural keys and values, never ids or times.
SNAPSHOT = {
    "messages": "SELECT control_id, content_hash, status, error, control_id_reused "
    "FROM hl7_messages ORDER BY id",
    "findings": "SELECT h.control_id, r.field, r.rule, r.message, r.severity "
    "FROM import_rejections r JOIN hl7_messages h ON h.id = r.line ORDER BY r.id",
    "batches": "SELECT provider_name, location_name, integrated, status, total_rows, accepted, "
    "rejected, warnings, new_clients, updated_clients, mrns_mapped, needs_review, "
    "queued_invitations, error FROM import_batches ORDER BY id",
    "clients": "SELECT client_ref, first_name, last_name, date_of_birth, email, mobile_phone, "
    "guardian_first_name, guardian_last_name FROM clients ORDER BY client_ref",
    "connections": "SELECT p.name, l.name, c.client_ref, n.status, n.mrn FROM connections n "
    "JOIN clients c ON c.id = n.client_id JOIN providers p ON p.id = n.provider_id "
    "JOIN locations l ON l.id = n.location_id ORDER BY 1, 2, 3",
    "invitations": "SELECT status, count(*) FROM invitations GROUP BY status ORDER BY status",
}


def snapshot(db: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with db.connect() as conn:
        return {
            name: [tuple(str(v) for v in row) for row in conn.execute(text(query))]
            for name, query in SNAPSHOT.items()
        }


def empty(db: Engine) -> None:
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def messages() -> list[str]:
    """Every kind of outcome a group can hold: warnings of each rule, minors, untyped MRNs,
    errors, a patient sent twice (the later message wins), merges, schedules, other types."""
    same_patient_later = m.EPIC_A04.replace("EPC0001", "EPC0002").replace(
        "ines.n@example.org", "ines.later@example.org"
    )
    bad_date = m.EPIC_A04.replace("19800102", "19801302").replace("EPC0001", "EPC0009")
    generated = [g.decode() for g in generate_messages(120, seed=5)]
    return [
        m.EPIC_A04,
        m.CERNER_A08,
        m.MEDITECH_A28_MINOR,
        m.CUSTOM_SEPARATORS_A31,
        m.TEST_PATIENT_A01,
        m.JUNK_CONTACT_A08,
        m.SUFFIX_NAME_A04,
        m.UNTYPED_IDENTIFIERS_A04,
        bad_date,
        same_patient_later,
        m.MERGE_A40,
        m.DISCHARGE_A03,
        *generated,
    ]


# PMSYS-style ADT^A08 (as JUNK_CONTACT_A08) that a listener stored before the file drop, for
# the same doctor and clinic as JUNK_CONTACT_A08: their group mixes a message read again with
# messages the receipt read, one of which it warned about (junk email, unusable phone).
LISTENED_WEST_A08 = "\r".join(
    [
        "MSH|^~\\&|PMSYS|WESTCLINIC|OPENSLOTS|OS|20261126131000||ADT^A08^ADT_A08|PM-76|P|2.5.1",
        "PID|1||W7006^^^WEST^MR||Haddad^Omar||19830303|M|||||^PRN^CP^^1^212^5550199",
        "PV1|1|O|GEN^^^WESTCLINIC||||D9^Weiß^Anna",
    ]
)


def run(
    db: Engine, tmp_path: Path, *, handover: bool, listened: tuple[str, ...] = (m.ZERO_PADDED_A01,)
) -> tuple[dict[str, Any], dict[str, Any]]:
    # A listener stored patients first: their groups are read again at ingest.
    StoreThenAck(db).handle([message.encode() for message in listened])
    path = tmp_path / f"feed-{handover}.hl7"
    path.write_bytes("\r".join(messages()).encode())
    stored = store_files.fn([str(path)])
    kept = len(RECEIPTS)
    if not handover:
        RECEIPTS.clear()
    applied = ingest_stored.fn()
    assert len(RECEIPTS) == 0  # every reading was taken or dropped
    counts = applied.as_dict() | {"stored": stored.as_dict(), "readings_kept": kept > 0}
    return counts, snapshot(db)


def test_ingest_with_the_receipts_readings_leaves_what_reading_again_leaves(
    db: Engine, tmp_path: Path
) -> None:
    with frozen_clock(dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)):
        with_readings, state = run(db, tmp_path, handover=True)
        empty(db)
        without, state_again = run(db, tmp_path, handover=False)
    assert with_readings["readings_kept"]
    assert with_readings == without
    assert state == state_again
    assert with_readings["warnings"] >= 3 and with_readings["applied"] > 120  # not vacuous
    assert {row[2] for row in state["findings"]} >= {
        "name_characters",
        "email_format",
        "mobile_number",
        "mrn_untyped",
    }


def test_a_group_mixing_readings_and_a_listeners_message_keeps_the_receipts_warnings(
    db: Engine, tmp_path: Path
) -> None:
    # Such a group is checked again as a whole; checking a reading's values again (the row after
    # the receipt dropped the junk email and the unusable phone) lost those two warnings.
    listened = (m.ZERO_PADDED_A01, LISTENED_WEST_A08)
    with frozen_clock(dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)):
        with_readings, state = run(db, tmp_path, handover=True, listened=listened)
        empty(db)
        without, state_again = run(db, tmp_path, handover=False, listened=listened)
    assert with_readings == without
    assert state == state_again
    junk = {(row[1], row[2]) for row in state["findings"] if row[0] == "PM-77"}
    assert junk == {("email", "email_format"), ("mobile_phone", "mobile_number")}


def reading(region_phone: str = "+12125550101") -> Reading:
    return Reading(
        "EPIC",
        "NORTH",
        "D1",
        "Lee",
        "CLINIC",
        False,
        ("E1", "Ann", "Lee", "1980-01-02", "", region_phone, "", ""),
        (),
        dt.date(2026, 11, 20),
    )


def test_a_reading_is_given_only_for_the_same_message_settings_and_day() -> None:
    receipts = Receipts()
    raw = m.EPIC_A04.encode()
    digest = content_hash(raw)  # what the claim answers: the stored row's hash of its bytes
    us, gb = (None, "US"), (None, "GB")
    with frozen_clock(dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)):
        receipts.keep(1, raw, us, reading())
        assert receipts.take(1, digest, gb) is None  # another region's answer is not this one
        receipts.keep(1, raw, us, reading())
        assert receipts.take(1, digest, ("NORTH", "US")) is None  # another assigning authority
        receipts.keep(1, raw, us, reading())
        other = content_hash(raw + b"\rZPD|x")
        assert receipts.take(1, other, us) is None  # id 1 of another database
        receipts.keep(1, raw, us, reading())
        assert receipts.take(2, digest, us) is None
        assert receipts.take(1, digest, us) == reading()
        assert receipts.take(1, digest, us) is None  # taken once
        receipts.keep(3, raw, us, reading())
    with frozen_clock(dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)):
        assert receipts.take(3, digest, us) is None  # the birth date rules moved on a day
    assert len(receipts) == 0


def test_the_collector_is_paused_inside_and_left_as_it_was_found() -> None:
    import gc

    from openslots.tasks.hl7 import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it off
    assert gc.isenabled()
    try:
        with collector_paused():
            raise ValueError
    except ValueError:
        pass
    assert gc.isenabled()  # also after an error
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # found off, left off
    finally:
        gc.enable()
