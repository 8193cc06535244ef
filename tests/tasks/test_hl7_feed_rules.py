"""What a feed patient is held to, decided at receipt and applied the same way at ingest:
names (issue 8.1), junk contacts (8.3), HL7 wording (8.4), PID-3 without type (8.5), and the
ACK that tells it (8.12). SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from openslots.connectors.hl7.errors import Hl7Error
from openslots.connectors.hl7.files import NOT_HL7, split_messages
from openslots.connectors.hl7.parser import parse
from openslots.domain.contact import EMAIL_PATTERN
from openslots.tasks.hl7 import ingest_stored, store_files
from openslots.tasks.hl7_receive import PER_ROW_LIMIT, StoreThenAck, hl7_date, judge_patients
from tests import hl7_messages as m


def rows(db: Engine, query: str) -> list[tuple]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


def ack_of(db: Engine, message: str) -> tuple[str, list[list[str]]]:
    """(MSA-1, ERR segments split into fields) of the MLLP handler's ACK for one message."""
    (reply,) = StoreThenAck(db).handle([message.encode()])
    ack = parse(reply.response)
    return ack.field(ack.first("MSA"), 1), [s for s in ack.segments if s[0] == "ERR"]


def findings(db: Engine) -> set[tuple[str, str, str]]:
    return set(rows(db, "SELECT field, rule, severity FROM import_rejections"))


def test_suffixed_and_odd_names_are_applied_the_odd_ones_with_a_warning(db: Engine) -> None:
    code, errs = ack_of(db, m.SUFFIX_NAME_A04)
    assert (code, errs) == ("AA", [])  # "King, Jr." is a name; PID-7 with time and offset
    code, errs = ack_of(db, m.TEST_PATIENT_A01)
    assert code == "AA"
    assert [(e[2], e[4], e[5]) for e in errs] == [
        ("PID^1^5^1^2", "W", "name_characters"),  # PATIENT2: given name
        ("PID^1^5^1^1", "W", "name_characters"),  # TEST1: family name
    ]
    counts = ingest_stored.fn()
    assert (counts.applied, counts.errors, counts.warnings) == (2, 0, 1)
    names = rows(db, "SELECT client_ref, last_name, date_of_birth FROM clients ORDER BY 1")
    assert [(r[0], r[1], str(r[2])) for r in names] == [
        ("E1100", "King, Jr.", "1980-01-02"),
        ("T9001", "TEST1", "1990-05-15"),
    ]
    assert findings(db) == {
        ("first_name", "name_characters", "warning"),
        ("last_name", "name_characters", "warning"),
    }


def test_junk_contacts_are_dropped_with_a_warning_and_the_patient_applied(db: Engine) -> None:
    code, errs = ack_of(db, m.JUNK_CONTACT_A08)
    assert code == "AA"
    assert {(e[2], e[3], e[4], e[5]) for e in errs} == {
        ("PID^1^13", "0^^HL70357", "W", "email_format"),
        ("PID^1^13", "0^^HL70357", "W", "mobile_number"),
    }
    assert all("5553331234" not in e[8] for e in errs)  # the ACK never quotes a value
    counts = ingest_stored.fn()
    assert (counts.applied, counts.errors, counts.not_invitable) == (1, 0, 1)
    assert rows(db, "SELECT client_ref, email, mobile_phone FROM clients") == [
        ("W7007", None, None)
    ]
    assert findings(db) == {
        ("email", "email_format", "warning"),
        ("mobile_phone", "mobile_number", "warning"),
    }


def test_one_untyped_identifier_is_the_mrn_with_a_warning_several_are_an_error(
    db: Engine,
) -> None:
    code, errs = ack_of(db, m.CERNER_A08)  # one identifier, no type code
    assert code == "AA" and [(e[2], e[4], e[5]) for e in errs] == [("PID^1^3", "W", "mrn_untyped")]
    code, errs = ack_of(db, m.UNTYPED_IDENTIFIERS_A04)
    assert code == "AE" and [(e[2], e[3], e[4], e[5]) for e in errs] == [
        ("PID^1^3", "101^^HL70357", "E", "mrn_ambiguous")
    ]
    assert "type code MR (PID-3.5)" in errs[0][8]
    counts = ingest_stored.fn()
    assert (counts.applied, counts.warnings) == (1, 1)
    assert rows(db, "SELECT client_ref FROM clients") == [("C2002",)]
    assert findings(db) == {("client_id", "mrn_untyped", "warning")}


def test_a_patient_that_would_fail_at_ingest_is_refused_at_receipt_in_hl7_words(
    db: Engine,
) -> None:
    """Every rule that decides the outcome runs before the ACK: nothing AA turns into an error."""
    cases = {
        m.EPIC_A04.replace("19800102", "1980-01-02"): (
            "PID^1^7",
            "date_format",
            "PID-7 (date_format): the birth date (PID-7.1) must be an HL7 date YYYYMMDD, "
            "optionally with time and UTC offset (YYYYMMDDHHMM[SS][+/-ZZZZ])",
        ),
        m.EPIC_A04.replace("Núñez^Inés^M", "Núñez"): (
            "PID^1^5^1^2",
            "required",
            "PID-5.2 (required): the given name (PID-5.2) is required",
        ),
        m.EPIC_A04.replace("Núñez^Inés", "1234^Inés"): (
            "PID^1^5^1^1",
            "name_letter",
            "PID-5.1 (name_letter): the family name (PID-5.1) must contain at least one letter",
        ),
        m.MEDITECH_A28_MINOR.replace("Lindqvist^Karin", "Lindqvist"): (
            "NK1^1^2",
            "guardian_names_together",
            "NK1-2 (guardian_names_together): the guardian NK1-2 needs both a family name "
            "(NK1-2.1) and a given name (NK1-2.2)",
        ),
    }
    for message, (where, rule, reason) in cases.items():
        code, errs = ack_of(db, message.replace("EPC0001", f"X{len(where)}{rule}"))
        assert code == "AE", rule
        assert [(e[2], e[4], e[5], e[8]) for e in errs] == [(where, "E", rule, reason)]
    assert ingest_stored.fn().messages == 0  # nothing stored as applicable
    assert rows(db, "SELECT count(*) FROM hl7_messages WHERE status = 'error'") == [(4,)]


def test_file_drop_and_mllp_decide_the_same_and_ingest_agrees(db: Engine, tmp_path: Path) -> None:
    messages = [
        m.EPIC_A04,
        m.CERNER_A08,
        m.TEST_PATIENT_A01,
        m.JUNK_CONTACT_A08,
        m.UNTYPED_IDENTIFIERS_A04,
        m.EPIC_A04.replace("19800102", "19801302").replace("EPC0001", "EPC0009"),
    ]
    path = tmp_path / "feed.hl7"
    path.write_bytes("\r".join(messages).encode())
    stored = store_files.fn([str(path)])
    assert stored.errors == 2
    counts = ingest_stored.fn()
    assert (counts.applied, counts.errors, counts.warnings) == (4, 0, 3)
    replies = StoreThenAck(db).handle([x.encode() for x in messages])  # redeliveries
    assert [r.code for r in replies] == ["AA", "AA", "AA", "AA", "AE", "AE"]


def test_split_messages_handles_batches_mllp_and_a_bom() -> None:
    batch = m.BATCH_FILE.encode()
    assert [parse(x).header.control_id for x in split_messages(batch)] == ["EPC0001", "EPC0040"]
    framed = b"".join(b"\x0b" + x + b"\x1c\r" for x in (batch, m.CERNER_A08.encode()))
    assert len(split_messages(framed)) == 3
    assert len(split_messages(b"\xef\xbb\xbf \r\n" + m.EPIC_A04.encode())) == 1


def test_a_drop_decides_by_content_and_never_ignores_a_file_silently(
    db: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "adt_0001.txt").write_bytes(b"\xef\xbb\xbf\r\n" + m.EPIC_A04.encode())
    (folder / "batch.dat").write_bytes(m.BATCH_FILE.encode())
    (folder / "framed.msg").write_bytes(b"\x0b" + m.CERNER_A08.encode() + b"\x1c\r")
    (folder / "notes.txt").write_text("call the clinic on Monday\n")
    (folder / "MANIFEST.tsv").write_text("file\tkind\n")
    (folder / "broken.hl7").write_text("this was meant as HL7\n")  # stays a rejected message
    named = tmp_path / "named.json"  # named on the command line: read, whatever it holds
    named.write_text("{}")
    stored = store_files.fn([str(folder), str(named)])
    assert (stored.messages, stored.errors) == (6, 2)  # 4 messages + broken.hl7 + named.json
    assert stored.skipped_files == [
        {"path": str(folder / name), "reason": NOT_HL7} for name in ("MANIFEST.tsv", "notes.txt")
    ]
    assert sorted(rows(db, "SELECT control_id FROM hl7_messages WHERE status = 'stored'")) == [
        ("CRN-88",),
        ("EPC0001",),
        ("EPC0040",),
    ]  # EPC0001 twice (.txt and batch): one redelivery


# Arbitrary feed patients: names with suffixes, punctuation, digits, control characters and
# other scripts; emails and junk; phones of every shape; HL7 dates real, unreal and not dates.
NAME_PARTS = ["King", "Jr.", "III", "O’Neil", "St.", "José", "अनिल", "TEST1", "-", ",", "<b>"]
names = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=3).map(" ".join),
    st.text(alphabet="aZé’'-., 09@<>\x00\x07\x1f\u00a0\u0301", max_size=12),
    st.text(max_size=12),
)
emails = st.one_of(
    st.just(""),
    st.from_regex(EMAIL_PATTERN, fullmatch=True).map(lambda e: f" {e.upper()} "),
    st.text(alphabet="ab@.-_ \x07", max_size=12),
)
phones = st.one_of(
    st.just(""),
    st.builds(
        "({}) {}-{:04d}".format, st.integers(100, 999), st.integers(100, 999), st.integers(0, 9999)
    ),
    st.sampled_from(["+44 7911 123456", "800-555-0100", "12", "call me"]),
    st.text(alphabet="0123456789 +-()", max_size=14),
)
hl7_dates = st.one_of(
    st.just(""),
    st.dates(dt.date(1850, 1, 1), dt.date(2100, 12, 31)).map(lambda d: d.strftime("%Y%m%d")),
    st.builds(
        "{:04d}{:02d}{:02d}".format, st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)
    ),
    st.builds(
        "{}{}".format,
        st.from_regex(r"[0-9]{8}", fullmatch=True),
        st.sampled_from(["", "1230", "123045+0100", "12-0500", "x"]),
    ),
    st.text(alphabet="0123456789-/٣", max_size=12),
)
patients = st.fixed_dictionaries(
    {
        "client_id": st.one_of(st.text(alphabet="M0123\x07", max_size=4), st.just("M" * 70)),
        "first_name": names,
        "last_name": names,
        "date_of_birth": hl7_dates.map(hl7_date),
        "email": emails,
        "mobile_phone": phones,
        "guardian_first_name": names,
        "guardian_last_name": names,
    }
)


def decided(error: Hl7Error | None) -> tuple[str, str, str | None, str | None] | None:
    return None if error is None else (type(error).__name__, str(error), error.location, error.rule)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(patients, st.booleans()), min_size=1, max_size=8),
    st.sampled_from(["US", "GB"]),
)
def test_one_row_at_a_time_decides_as_the_columns(
    group: list[tuple[dict[str, str], bool]], region: str
) -> None:
    rows, untyped = [row for row, _ in group], [u for _, u in group]
    by_row = judge_patients(rows, region, untyped, per_row=True)
    by_column = judge_patients(rows, region, untyped, per_row=False)
    assert [decided(v.error) for v in by_row] == [decided(v.error) for v in by_column]
    assert [[decided(w) for w in v.warnings] for v in by_row] == [
        [decided(w) for w in v.warnings] for v in by_column
    ]


def test_a_small_group_is_judged_row_by_row_a_large_one_by_columns() -> None:
    row = {
        "client_id": "M1",
        "first_name": "Ann",
        "last_name": "Lee",
        "date_of_birth": "1980-01-02",
    }
    for size in (1, PER_ROW_LIMIT, PER_ROW_LIMIT + 1):
        verdicts = judge_patients([row] * size, "US")
        assert [(v.error, v.warnings) for v in verdicts] == [(None, [])] * size
