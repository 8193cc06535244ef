"""The fast HL7 path: what it extracts, and that it extracts exactly what hl7apy's parse does."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from openslots.connectors.hl7.errors import Hl7ParseError
from openslots.connectors.hl7.parser import (
    Encoding,
    Patient,
    extract_appointment,
    extract_patient,
    parse,
    unescape,
)
from openslots.connectors.hl7.reference import reference_appointment, reference_patient
from tests import hl7_messages as m

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7-public"


def test_epic_style_patient() -> None:
    patient = extract_patient(parse(m.EPIC_A04))
    assert (patient.mrn, patient.family, patient.given, patient.dob) == (
        "E1001",
        "Núñez",
        "Inés",
        "19800102",
    )
    assert (patient.email, patient.phone) == ("ines.n@example.org", "9175550147")  # the cell
    assert (patient.provider_id, patient.provider_name, patient.location) == (
        "D77",
        "Maria Rivera",
        "NORTHCLINIC",
    )
    assert parse(m.EPIC_A04).header.kind == "ADT^A04"


def test_untyped_identifier_old_phone_and_lf_separators() -> None:
    patient = extract_patient(parse(m.CERNER_A08))
    assert (patient.mrn, patient.phone, patient.email) == ("C2002", "(212)555-0188", "")


def test_minor_with_guardian_and_z_segment() -> None:
    patient = extract_patient(parse(m.MEDITECH_A28_MINOR))
    assert (patient.guardian_given, patient.guardian_family) == ("Karin", "Lindqvist")
    assert (patient.guardian_email, patient.guardian_phone) == ("karin.l@example.org", "6465550133")


def test_custom_separators_and_escapes() -> None:
    message = parse(m.CUSTOM_SEPARATORS_A31)
    assert message.encoding == Encoding("#", "$", "%", "\\", "*")
    patient = extract_patient(message)
    assert (patient.mrn, patient.family, patient.dob) == ("L4004", "O'Neil-Jones", "19600229")
    assert message.component(message.field(message.first("PID"), 11), 1) == "Unit 4#B"
    assert unescape("a\\S\\b\\T\\c\\R\\d\\E\\e\\X41\\", Encoding()) == "a^b&c~d\\eA"
    assert unescape('""', Encoding()) == ""


def test_merge_and_charset() -> None:
    patient = extract_patient(parse(m.MERGE_A40))
    assert (patient.mrn, patient.merged_mrn) == ("M5005", "M5999")
    latin = extract_patient(parse(m.LATIN1_A04))
    assert (latin.family, latin.given, latin.provider_name) == ("Müller", "Jürgen", "Anna Weiß")


def test_appointments() -> None:
    slot = extract_appointment(parse(m.SIU_S15_CANCELLED))
    assert (slot.filler_id, slot.start, slot.duration_minutes) == ("APT1", "202612011000", 30)
    assert (slot.provider_id, slot.location) == ("D77", "NORTHCLINIC")


@pytest.mark.parametrize("raw", [b"", b"garbage", b"PID|1||X", b"MSH|", b"\x0bMSH|^"])
def test_unreadable_input_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(Hl7ParseError):
        parse(raw)


def test_bom_and_surrounding_whitespace() -> None:
    assert parse(b"\xef\xbb\xbf" + m.EPIC_A04.encode() + b"\r\n").header.control_id == "EPC0001"


@pytest.mark.parametrize("text", m.ALL_ADT, ids=lambda t: t[9:30])
def test_fast_path_equals_hl7apy_for_patients(text: str) -> None:
    assert extract_patient(parse(text)) == reference_patient(text)


@pytest.mark.parametrize("text", m.ALL_SIU, ids=lambda t: t[60:80])
def test_fast_path_equals_hl7apy_for_appointments(text: str) -> None:
    assert extract_appointment(parse(text)) == reference_appointment(text)


def _comparable(record: object) -> object:
    """hl7apy turns numeric components (XTN.6 area code, XTN.7 local number: type NM) into
    numbers, dropping leading zeros ("0000001" -> "1"); the fast path keeps the digits, which
    is what a phone number needs. Compare phones without zeros; everything else as is."""
    if isinstance(record, Patient):
        return replace(
            record,
            phone=record.phone.replace("0", ""),
            guardian_phone=record.guardian_phone.replace("0", ""),
        )
    return record


def _corpus() -> list[tuple[str, str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(row.get("file") or row.get("path") or "", row.get("type", "")) for row in rows]


def test_fast_path_equals_hl7apy_on_the_public_corpus() -> None:
    """Over every public ADT/SIU sample hl7apy can parse, both read the same things."""
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in (".md", ".tsv"))
    if not files:
        pytest.skip("shared/corpus/hl7-public is not present")
    compared = 0
    for path in files:
        text = parse(path.read_bytes()).text
        kind = parse(text).header.message_type
        if kind not in ("ADT", "SIU"):
            continue
        try:
            expected = reference_patient(text) if kind == "ADT" else reference_appointment(text)
        except Exception:
            continue  # hl7apy cannot parse it (BOM, v2.8 segments, ...): nothing to compare
        actual = extract_patient(parse(text)) if kind == "ADT" else extract_appointment(parse(text))
        assert _comparable(actual) == _comparable(expected), path.name
        compared += 1
    assert compared >= 40
