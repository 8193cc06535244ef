"""Receiving HL7: decide what each message is (AA, AE or AR), store it, then acknowledge it.

One `receive` serves both ways in (the MLLP listener and the file drop), so a message is
judged the same whichever way it came, and every check that decides applied / warning / error
runs here, before the ACK: a patient is checked with the feed's own roster model
(`FeedPatientRow`, its checks run directly: cheap for an MLLP group) and ingest applies the
same rules. `StoreThenAck` is the handler the MLLP transport is given: it stores a group of
messages in one transaction and only then builds their ACKs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import Connection, Engine

from openslots.connectors.database.hl7_store import Incoming, Saved, store_group, store_messages
from openslots.connectors.hl7.ack import ack
from openslots.connectors.hl7.errors import Hl7ContentError, Hl7Error, Hl7ParseError, Hl7Warning
from openslots.connectors.hl7.mllp import Reply
from openslots.connectors.hl7.parser import (
    MRN_AMBIGUOUS,
    MRN_ONLY,
    Header,
    Message,
    Patient,
    extract_patient,
    identifiers,
    mrn_choice,
    parse,
)
from openslots.domain import clock, contact
from openslots.domain.normalise import email_value
from openslots.schemas.roster import (
    MAX_LENGTHS,
    NAME_COLUMNS,
    ROSTER_COLUMNS,
    FeedPatientRow,
    check_row,
    check_rows,
    name_warnings,
    normalise_chunk,
    normalise_record,
    rule_message,
)

DEMOGRAPHIC_EVENTS = {"A01", "A04", "A05", "A08", "A28", "A31"}
SCHEDULE_EVENTS = {"S12", "S13", "S15", "S17", "S26"}


class StorageUnavailable(Hl7Error):
    """The message could not be stored (the database refused or was unreachable): send again."""

    code = "207"


# Where a roster field comes from in an ADT message, and what an interface analyst calls it.
FIELD_LOCATIONS = {
    "client_id": ("PID-3", "the patient identifier (PID-3.1)"),
    "first_name": ("PID-5.2", "the given name (PID-5.2)"),
    "last_name": ("PID-5.1", "the family name (PID-5.1)"),
    "date_of_birth": ("PID-7", "the birth date (PID-7.1)"),
    "email": ("PID-13", "an email address (XTN-4 of a NET/Internet entry)"),
    "mobile_phone": ("PID-13", "a phone number"),
    "guardian_first_name": ("NK1-2.2", "the guardian's given name (NK1-2.2)"),
    "guardian_last_name": ("NK1-2.1", "the guardian's family name (NK1-2.1)"),
    "row": ("PID", "the patient"),
}
HL7_RULE_MESSAGES = {
    "required": "{what} is required",
    "name_letter": "{what} must contain at least one letter",
    "name_characters": "{what} holds characters a roster row may not (digits, <, >, @, a "
    "leading comma or period); accepted as the EHR sent it",
    "control_characters": "{what} contains control characters",
    "too_long": "{what} is longer than {limit} characters",
    "date_format": "{what} must be an HL7 date YYYYMMDD, optionally with time and UTC offset "
    "(YYYYMMDDHHMM[SS][+/-ZZZZ])",
    "real_date": "{what} is not a real calendar date",
    "not_in_future": "{what} is in the future",
    "not_over_130_years": "{what} is more than 130 years ago",
    "email_format": "{what} is not an email address; that contact is dropped, the patient is "
    "applied",
    "mobile_number": "{what} cannot be a mobile number for region {region}; that contact is "
    "dropped, the patient is applied",
    "guardian_names_together": "the guardian NK1-2 needs both a family name (NK1-2.1) and a "
    "given name (NK1-2.2)",
    MRN_ONLY: "PID-3 holds one identifier without type code MR; it is used as the MRN (send "
    "PID-3.5 = MR, or set OPENSLOTS_HL7_ASSIGNING_AUTHORITY)",
    MRN_AMBIGUOUS: "PID-3 holds several identifiers and none has type code MR (PID-3.5) or "
    "the configured assigning authority (PID-3.4): the MRN cannot be chosen",
}
# PID-7 as HL7 writes a date/time (DTM), of which a birth date needs at least the day.
HL7_DATE = re.compile(
    r"(\d{4})(\d{2})(\d{2})(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?(?:[+-]\d{4})?"
)
NOT_AN_HL7_DATE = "?"  # fails the roster's date_format, reported in HL7's words


def hl7_finding(field_name: str, rule: str, region: str = "", warning: bool = False) -> Hl7Error:
    """The HL7 error (or warning) for a roster rule failed by the field an ADT message filled."""
    location, what = FIELD_LOCATIONS.get(field_name, ("PID", "the patient"))
    template = HL7_RULE_MESSAGES.get(rule)
    text = (
        template.format(what=what, limit=MAX_LENGTHS.get(field_name), region=region)
        if template
        else rule_message(rule, field_name)
    )
    if rule in (MRN_ONLY, MRN_AMBIGUOUS):
        location = "PID-3"
    elif rule == "guardian_names_together":  # about both components: the field
        location = "NK1-2"
    return (Hl7Warning if warning else Hl7ContentError)(text, location, rule)


def hl7_date(value: str) -> str:
    """PID-7.1 as the roster's YYYY-MM-DD ("" when empty, NOT_AN_HL7_DATE when not HL7 form).

    >>> hl7_date("19800102"), hl7_date("198001021230+0100"), hl7_date("1980-01-02")
    ('1980-01-02', '1980-01-02', '?')
    """
    if not value:
        return ""
    match = HL7_DATE.fullmatch(value)
    return "-".join(match.groups()) if match else NOT_AN_HL7_DATE


def patient_row(header: Header, patient: Patient) -> dict[str, str]:
    """A roster row: a minor with a guardian becomes a dependent reached through the guardian."""
    iso = hl7_date(patient.dob_sent or patient.dob)
    row = {
        "client_id": patient.mrn,
        "first_name": patient.given,
        "last_name": patient.family,
        "date_of_birth": iso,
        "email": patient.email,
        "mobile_phone": patient.phone,
        "guardian_first_name": "",
        "guardian_last_name": "",
    }
    if patient.guardian_family and _is_minor(iso, header.timestamp):
        row |= {
            "guardian_first_name": patient.guardian_given,
            "guardian_last_name": patient.guardian_family,
            "email": patient.guardian_email or patient.email,
            "mobile_phone": patient.guardian_phone or patient.phone,
        }
    return row


def _is_minor(iso_dob: str, timestamp: str) -> bool:
    try:
        born = dt.date.fromisoformat(iso_dob)
    except ValueError:
        return False
    try:
        on = dt.datetime.strptime(timestamp[:8], "%Y%m%d").date()
    except ValueError:
        on = clock.today()
    return (on.year - born.year - ((on.month, on.day) < (born.month, born.day))) < 18


def screen_patients(raw: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[Any, str, str]]]:
    """What a feed forgives: an email that is not one is dropped (warning `email_format`),
    a name the CSV rule refuses is kept (warning `name_characters`). Returns the rows to
    validate and the warnings as (index, field, rule)."""
    raw = raw.copy()
    email = contact.normalise_email(raw["email"])
    junk = (email != "") & ~contact.is_valid_email(email)
    raw.loc[junk, "email"] = ""
    names = pd.DataFrame({c: contact.clean_text(raw[c]) for c in NAME_COLUMNS}, index=raw.index)
    found = [(index, "email", "email_format") for index in raw.index[junk]]
    found += [(index, column, "name_characters") for index, column in name_warnings(names)]
    return raw, found


@dataclass
class Verdict:
    """What the receipt decided about a patient: the error (AE), else warnings (AA + ERR W)."""

    error: Hl7Error | None = None
    warnings: list[Hl7Error] = field(default_factory=list)


# Up to this many rows a group is judged row by row (`check_row`): an MLLP group holds a few
# messages, and pandas' fixed cost per call (~36 ms for a group of 8) would cap the listener
# near 200 msg/s. Larger groups (a file drop) go through the columns, as a roster does.
PER_ROW_LIMIT = 256


def judge_patients(
    rows: Sequence[dict[str, str]],
    region: str,
    untyped_mrn: Sequence[bool] = (),
    per_row: bool | None = None,
    records: list[Checked] | None = None,
    today: dt.date | None = None,
) -> list[Verdict]:
    """Every roster rule a feed patient is held to, for a group of rows (one per message).

    `per_row` picks the path (default: by PER_ROW_LIMIT); both decide alike
    (tests/tasks/test_hl7_feed_rules.py checks it on arbitrary rows). `records`, when given,
    receives each row's normalised record and warnings (the row by row path is then taken):
    what ingest would compute again for the rows of a file drop (`Reading`). `today` (default:
    the clock's) is the day the birth date rules count from, read once for the whole group.
    """
    if records is not None:
        per_row = True
    elif per_row is None:
        per_row = len(rows) <= PER_ROW_LIMIT
    if per_row:
        judged = _judge_rows(rows, region, records, clock.today() if today is None else today)
    else:
        judged = _judge_columns(rows, region)
    verdicts = []
    for position, (errors, forgiven) in enumerate(judged):
        if position < len(untyped_mrn) and untyped_mrn[position]:
            forgiven.append(("client_id", MRN_ONLY))
        forgiven.sort(key=lambda finding: _field_order(finding[0]))
        verdicts.append(
            Verdict(
                hl7_finding(*errors[0]) if errors else None,
                [hl7_finding(name, rule, region, warning=True) for name, rule in forgiven],
            )
        )
    return verdicts


Findings = list[tuple[str, str]]  # (field, rule)


@dataclass(frozen=True, slots=True)
class Checked:
    """One row as the receipt normalised and checked it: the values the roster stages
    (`normalise_record`, its `dob` included) and the warnings in the order found (email,
    names, phone; without `mrn_untyped`)."""

    record: dict[str, Any]
    errors: tuple[tuple[str, str], ...]
    forgiven: tuple[tuple[str, str], ...]


def _judge_rows(
    rows: Sequence[dict[str, str]],
    region: str,
    records: list[Checked] | None,
    today: dt.date,
) -> list[tuple[Findings, Findings]]:
    """(errors, warnings) per row, one row at a time; `records` receives what was checked."""
    judged = []
    for raw in rows:
        email = email_value(raw.get("email", ""))
        forgiven: Findings = []
        if email and not contact.valid_email(email):
            raw = raw | {"email": ""}
            forgiven.append(("email", "email_format"))
        record, bad_phone = normalise_record(raw, region)
        # The record's names are the raw ones cleaned (`clean_value`), as the CSV rule sees them.
        forgiven += [
            (column, "name_characters")
            for column in NAME_COLUMNS
            if (name := record[column]) and not contact.valid_name(name)
        ]
        if bad_phone:
            forgiven.append(("mobile_phone", "mobile_number"))
        errors = check_row(FeedPatientRow, record, today)
        if records is not None:
            records.append(Checked(record, tuple(errors), tuple(forgiven)))
        judged.append((errors, forgiven))
    return judged


def _judge_columns(rows: Sequence[dict[str, str]], region: str) -> list[tuple[Findings, Findings]]:
    """(errors, warnings) per row, the rows as one frame (the roster's vectorised checks)."""
    judged: list[tuple[Findings, Findings]] = [([], []) for _ in rows]
    if not rows:
        return judged
    raw = pd.DataFrame(list(rows), columns=list(ROSTER_COLUMNS), dtype="str")
    raw, forgiven = screen_patients(raw)
    frame, bad_phone = normalise_chunk(raw, region)
    for index, field_name, rule in check_rows(FeedPatientRow, frame):
        judged[int(index)][0].append((field_name, rule))
    forgiven += [(index, "mobile_phone", "mobile_number") for index in frame.index[bad_phone]]
    for index, field_name, rule in forgiven:
        judged[int(index)][1].append((field_name, rule))
    return judged


def _field_order(name: str) -> int:
    return ROSTER_COLUMNS.index(name) if name in ROSTER_COLUMNS else -1


def precheck(message: Message, authority: str | None = None) -> None:
    """Raise Hl7ContentError when a message we apply lacks what applying needs (AE)."""
    header = message.header
    if not header.control_id:
        raise Hl7ContentError("the message control id is required", "MSH-10", "required")
    if header.message_type == "ADT" and (
        header.trigger_event in DEMOGRAPHIC_EVENTS or header.trigger_event == "A40"
    ):
        pid = message.first("PID")
        if pid is None:
            raise Hl7ContentError(
                f"the PID segment is required in {header.kind}", "PID", "required"
            )
        mrn, how = mrn_choice(identifiers(message, message.field(pid, 3)), authority)
        if how == MRN_AMBIGUOUS:
            raise hl7_finding("client_id", MRN_AMBIGUOUS)
        if not mrn:
            raise hl7_finding("client_id", "required")
        if header.trigger_event == "A40" and message.first("MRG") is None:
            raise Hl7ContentError("the MRG segment is required in a merge", "MRG", "required")
    scheduled = header.message_type == "SIU" and header.trigger_event in SCHEDULE_EVENTS - {"S26"}
    if scheduled and message.first("SCH") is None:
        raise Hl7ContentError(f"the SCH segment is required in {header.kind}", "SCH", "required")


def classify(message: Message | None, error: Exception | None) -> str:
    """AA, AE or AR for what happened to a message on receipt."""
    if isinstance(error, Hl7ParseError) or (message is None and error is not None):
        return "AR"
    if error is not None:
        return "AE"
    return "AA"


@dataclass
class Stored:
    """The outcome of receiving one message, and what to acknowledge."""

    message_id: int
    ack_code: str  # AA | AE | AR
    duplicate: bool
    message: Message | None
    error: Hl7Error | None
    control_id_reused: bool = False  # stored beside a different message with its control id
    warnings: list[Hl7Error] = field(default_factory=list)  # applied anyway: AA with ERR W


def _judge(raw: bytes, authority: str | None) -> tuple[Message | None, Hl7Error | None]:
    """The message, and why it cannot be applied (Hl7ParseError: AR, Hl7ContentError: AE)."""
    message: Message | None = None
    try:
        message = parse(raw)
        precheck(message, authority)
    except Hl7Error as exc:
        return message, exc
    except Exception:
        return message, Hl7ParseError("the message cannot be read as HL7")
    return message, None


class Reading(NamedTuple):
    """What the receipt read and checked of an applicable ADT message, all that ingest needs
    to apply it (patient data: kept in the process, never returned by a task). A file drop
    hands it to the ingest that follows in the same run, so a message is parsed and checked
    once (`Receipts`, below). Strings in tuples only: the garbage collector stops
    tracking such tuples, so holding a run's readings costs it nothing."""

    sending_application: str  # MSH-3.1
    sending_facility: str  # MSH-4.1
    provider_id: str  # PV1-7.1
    provider_name: str
    location: str  # PV1-3
    mrn_untyped: bool  # PID-3 gave the MRN without type code MR (warning mrn_untyped)
    values: tuple[str, ...]  # the roster row, normalised, in ROSTER_COLUMNS order
    forgiven: tuple[tuple[str, str], ...]  # warnings as (field, rule), as `Checked` has them
    day: dt.date  # the rules' today (birth date bounds): a reading is stale the next day


def _reading(header: Header, patient: Patient, checked: Checked, day: dt.date) -> Reading:
    return Reading(
        header.sending_application,
        header.sending_facility,
        patient.provider_id,
        patient.provider_name,
        patient.location,
        patient.mrn_choice == MRN_ONLY,
        tuple(checked.record[column] for column in ROSTER_COLUMNS),
        checked.forgiven,
        day,
    )


def judge(
    raws: Sequence[bytes],
    authority: str | None = None,
    region: str = "US",
    readings: dict[int, Reading] | None = None,
) -> list[tuple[Message | None, Hl7Error | None, list[Hl7Error]]]:
    """(message, error, warnings) for each raw message: the whole decision, before any ACK.

    `readings`, when given, receives by position the reading of every ADT patient that
    passed (no error): what ingest needs to apply it without reading it again.
    """
    judged = [_judge(raw, authority) for raw in raws]
    warnings: list[list[Hl7Error]] = [[] for _ in raws]
    patients: list[tuple[int, Patient, Header]] = []
    for position, (message, error) in enumerate(judged):
        if message is None or error is not None:
            continue
        header = message.header
        if header.message_type == "ADT" and header.trigger_event in DEMOGRAPHIC_EVENTS:
            patients.append((position, extract_patient(message, authority), header))
    day = clock.today()
    records: list[Checked] | None = [] if readings is not None else None
    verdicts = judge_patients(
        [patient_row(header, patient) for _, patient, header in patients],
        region,
        [patient.mrn_choice == MRN_ONLY for _, patient, _ in patients],
        records=records,
        today=day,
    )
    for index, ((position, patient, header), verdict) in enumerate(
        zip(patients, verdicts, strict=True)
    ):
        message = judged[position][0]
        judged[position] = (message, verdict.error)
        warnings[position] = [] if verdict.error else verdict.warnings
        if readings is not None and records is not None and verdict.error is None:
            readings[position] = _reading(header, patient, records[index], day)
    return [(m, e, w) for (m, e), w in zip(judged, warnings, strict=True)]


def receive(
    conn: Connection,
    raws: Sequence[bytes],
    source: str,
    authority: str | None = None,
    region: str = "US",
    readings: dict[int, Reading] | None = None,
) -> list[Stored]:
    """Parse, check and store a batch of raw messages in one transaction (the caller commits).

    `readings` receives by position what `judge` read of each applicable ADT patient."""
    judged = judge(raws, authority, region, readings)
    return outcomes(judged, store_messages(conn, incoming(raws, judged), source))


Judged = tuple[Message | None, Hl7Error | None, list[Hl7Error]]


def incoming(raws: Sequence[bytes], judged: Sequence[Judged]) -> list[Incoming]:
    """What the store is given for each judged message: its identity, hash and verdict."""
    found = []
    for raw, (message, error, _warnings) in zip(raws, judged, strict=True):
        header = message.header if message is not None else None
        found.append(
            Incoming(
                raw=raw,
                identity=(
                    (header.sending_application, header.sending_facility, header.control_id)
                    if header is not None
                    else ("", "", "")
                ),
                content_hash=content_hash(raw),
                message_type=header.kind if header is not None else "",
                error=str(error) if error is not None else None,
            )
        )
    return found


def content_hash(raw: bytes) -> str:
    """What the store keeps of a message to tell its redeliveries: SHA-256 of its bytes."""
    return hashlib.sha256(raw).hexdigest()


def outcomes(judged: Sequence[Judged], saved: Sequence[Saved]) -> list[Stored]:
    return [
        Stored(
            s.message_id,
            classify(message, error),
            s.duplicate,
            message,
            error,
            s.control_id_reused,
            warnings,
        )
        for s, (message, error, warnings) in zip(saved, judged, strict=True)
    ]


class StoreThenAck:
    """The MLLP listener's handler: store a group in one transaction, then ACK each message.

    `openslots hl7 listen` builds it from `resources()` and hands it to the transport:
    `MllpListener(StoreThenAck(res.engine, settings.hl7_assigning_authority,
    region=settings.phone_region), host, port)`.
    """

    def __init__(
        self,
        engine: Engine,
        authority: str | None = None,
        source: str = "mllp",
        region: str = "US",
    ):
        self.engine, self.authority, self.source, self.region = engine, authority, source, region
        self._conn: Connection | None = None  # the writer's own connection, kept between groups

    def handle(self, raws: list[bytes]) -> list[Reply]:
        # Every decision first, off the database: the connection is busy only while storing.
        judged = judge(raws, self.authority, self.region)
        stored = outcomes(judged, self._store(incoming(raws, judged)))
        # Only after the commit: an AA promises the message is stored.
        at = clock.now()
        return [
            Reply(
                ack(s.message, s.ack_code, s.error, s.warnings, at),
                s.ack_code,
                new=s.ack_code == "AA" and not s.duplicate,
            )
            for s in stored
        ]

    def _store(self, messages: list[Incoming]) -> list[Saved]:
        """Store a group durably. One writer calls this, one group at a time, so it keeps its
        connection between groups (no checkout and pre-ping per group); a connection that
        failed is dropped and the next group opens a new one."""
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            return store_group(self._conn, messages, self.source)
        except BaseException:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.invalidate()  # whatever state it is in, it is not used again
            raise

    def close(self) -> None:
        """Give the writer's connection back to the pool (when the listener stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def refuse(self, raw: bytes) -> Reply:
        error = StorageUnavailable("the message was not stored; send it again")
        return Reply(ack(None, "AR", error), "AR")


class Receipts:
    """What a file drop's receipt read and checked of each message it stored, by message id,
    for the ingest that follows in the same process and run: a message is then parsed and
    checked once instead of twice. Patient data stays in memory, as the claimed messages do.

    A reading is used only for the very message it was made from (same content hash, the
    SHA-256 of its raw bytes that the store keeps: ids of another database can be the same),
    under the same assigning authority and phone region,
    on the same day (the birth date rules count from today); anything else is read again.
    Ingest takes each reading out as it claims the message; a new file drop starts empty.
    """

    LIMIT = 200_000  # readings kept at most (~1 KB each); messages beyond are read again

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, tuple[str | None, str], Reading]] = {}

    def clear(self) -> None:
        self._by_id.clear()

    def keep(
        self, message_id: int, raw: bytes, key: tuple[str | None, str], reading: Reading
    ) -> None:
        if len(self._by_id) < self.LIMIT:
            self._by_id[message_id] = (content_hash(raw), key, reading)

    def take(
        self,
        message_id: int,
        digest: str,
        key: tuple[str | None, str],
        today: dt.date | None = None,
    ) -> Reading | None:
        """The reading of the message stored as `message_id` with content hash `digest` (and
        forget it), or None when there is none that fits. `today` (default: the clock's): a
        caller taking a batch reads the clock once for all."""
        found = self._by_id.pop(message_id, None)
        if found is None:
            return None
        kept_digest, kept_key, reading = found
        day = clock.today() if today is None else today
        if kept_key != key or kept_digest != digest or reading.day != day:
            return None
        return reading

    def __len__(self) -> int:
        return len(self._by_id)


RECEIPTS = Receipts()
