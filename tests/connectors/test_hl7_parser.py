"""The fast HL7 path: what it extracts, and that it extracts exactly what hl7apy's parse does."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
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
from tests._corpus import hl7_public_corpus, hl7_public_manifest


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


# hl7apy types XTN.6 (area code) and XTN.7 (local number) as NM and stores them as Decimal, so
# "0000001" reads back as "1"; the fast path keeps the digits, which is what a phone number needs.
# That is the one documented difference between the two readers.
_PHONE_FIELDS = {"PID": (13, 14), "NK1": (5, 6)}


def _as_hl7apy_number(component: str) -> str:
    try:
        return str(Decimal(component))
    except InvalidOperation:  # not a number: hl7apy keeps the text ("555-0188")
        return component


def _as_hl7apy_reads_it(record: object, text: str) -> object:
    """The fast path's record with exactly that difference applied: every phone it built from
    XTN.6+XTN.7 gets its two components as hl7apy reads NM values. Nothing else is touched."""
    if not isinstance(record, Patient):
        return record
    message = parse(text)
    converted: dict[str, str] = {}
    for name, numbers in _PHONE_FIELDS.items():
        for segment in message.all(name):
            for number in numbers:
                for rep in message.repetitions(message.field(segment, number)):
                    area, local = message.component(rep, 6), message.component(rep, 7)
                    if local:  # the phone is XTN.6+XTN.7 only when XTN.7 is there
                        read = _as_hl7apy_number(area) + _as_hl7apy_number(local)
                        assert converted.setdefault(area + local, read) == read, "ambiguous phone"
    return replace(
        record,
        phone=converted.get(record.phone, record.phone),
        guardian_phone=converted.get(record.guardian_phone, record.guardian_phone),
    )


def test_the_one_documented_difference_from_hl7apy_is_leading_zeros_of_xtn_numbers() -> None:
    ours, theirs = extract_patient(parse(m.ZERO_PADDED_A01)), reference_patient(m.ZERO_PADDED_A01)
    assert (ours.phone, ours.guardian_phone) == ("5550000001", "05550001234")
    assert (theirs.phone, theirs.guardian_phone) == ("5551", "5551234")
    assert _as_hl7apy_reads_it(ours, m.ZERO_PADDED_A01) == theirs
    different_digits = replace(ours, phone="5550000002")  # a different number stays different
    assert _as_hl7apy_reads_it(different_digits, m.ZERO_PADDED_A01) != theirs


# ADT/SIU messages of the public corpus that hl7apy cannot read, each with the exception it
# raises and why. A message that joins or leaves this list fails the test: look at it.
HL7APY_CANNOT_PARSE = {
    # MSH-2 is `^~\\&` (a doubled escape character): hl7apy rejects duplicate encoding
    # characters; the fast path accepts this form on purpose (seen in the wild).
    "LinuxForHealth__hl7v2-fhir-converter/ADT-multiline.hl7": "InvalidEncodingChars",
    "LinuxForHealth__hl7v2-fhir-converter/sample_unix.hl7": "InvalidEncodingChars",
    "LinuxForHealth__hl7v2-fhir-converter/sample_win.hl7": "InvalidEncodingChars",
    # v2.2 with more components in XAD (PID-11) and CN (PV1-7/8/17) than v2.2 defines: hl7apy
    # leaves the extra components unnamed and the reference's positional walk cannot read them.
    "Aidbox__aidbox-hl7v2-example/adt-a03_example-01.hl7": "TypeError",
}
CORPUS_FILES, CORPUS_ADT_SIU, CORPUS_COMPARED = 68, 60, 56


def _read(text: str, kind: str, fast: bool) -> object:
    if kind == "ADT":
        return extract_patient(parse(text)) if fast else reference_patient(text)
    return extract_appointment(parse(text)) if fast else reference_appointment(text)


def test_fast_path_equals_hl7apy_on_the_public_corpus() -> None:
    """Every public sample the manifest lists: the fast path reads each one without raising,
    agrees with the manifest's message type, and reads what hl7apy reads wherever hl7apy can."""
    manifest = hl7_public_manifest()
    root = hl7_public_corpus()
    on_disk = {p for p in root.rglob("*") if p.is_file() and p.suffix not in (".md", ".tsv")}
    assert {entry.path for entry in manifest} == on_disk, "MANIFEST.tsv and the files disagree"
    assert len(manifest) == CORPUS_FILES
    adt_siu = compared = 0
    hl7apy_failures: dict[str, str] = {}
    for entry in manifest:
        name = entry.path.relative_to(root).as_posix()
        message = parse(entry.path.read_bytes())  # never raises on any corpus file
        # The manifest copies MSH-9 as sent, in the message's own component separator.
        assert message.header.kind == "^".join(re.split(r"\W", entry.message_type)[:2]), name
        kind = message.header.message_type
        if kind not in ("ADT", "SIU"):
            continue
        adt_siu += 1
        actual = _read(message.text, kind, fast=True)
        try:
            expected = _read(message.text, kind, fast=False)
        except Exception as exc:
            hl7apy_failures[name] = type(exc).__name__
            continue
        assert _as_hl7apy_reads_it(actual, message.text) == expected, name
        compared += 1
    assert hl7apy_failures == HL7APY_CANNOT_PARSE
    assert (adt_siu, compared) == (CORPUS_ADT_SIU, CORPUS_COMPARED)


def test_a_missing_corpus_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests import _corpus

    assert _corpus.repository_root() / "tests" / "_corpus.py" == Path(_corpus.__file__).resolve()
    monkeypatch.setattr(_corpus, "HL7_PUBLIC", tmp_path / "nowhere")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _corpus.hl7_public_corpus()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="corpus is missing"):
        _corpus.hl7_public_corpus()
