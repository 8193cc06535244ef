"""HL7 ingest: store files of messages, then apply stored messages in batches.

ADT demographics become patient rows that go through the roster's own validation, MRN mapping
and invitation queueing (one import batch per provider and location); SIU messages open and
fill slots; A40 merges MRNs. Tasks return counts only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection, Engine

from openslots.connectors.database import batches
from openslots.connectors.database import hl7_store as store
from openslots.connectors.database import roster as repo
from openslots.connectors.database import slots as slot_repo
from openslots.connectors.database.merges import merge_mrns
from openslots.connectors.database.models import FindingSeverity, Hl7MessageStatus, ImportMode
from openslots.connectors.database.providers import Feed, provider_integrated
from openslots.connectors.hl7.parser import (
    MRN_ONLY,
    Appointment,
    Header,
    Patient,
    extract_appointment,
    extract_patient,
    parse,
)
from openslots.domain import clock
from openslots.domain.offers import parse_start
from openslots.domain.reconcile import S12Effect
from openslots.errors import RosterFileError
from openslots.events import slots_opened
from openslots.resources import resources
from openslots.schemas.roster import ROSTER_COLUMNS, FeedPatientRow, Rejection, validate_chunk
from openslots.settings import Settings
from openslots.tasks._safety import phi_safe, run_logger
from openslots.tasks.hl7_receive import (
    DEMOGRAPHIC_EVENTS,
    FIELD_LOCATIONS,
    hl7_finding,
    patient_row,
    receive,
    screen_patients,
)
from openslots.tasks.offers import offer_due
from openslots.tasks.roster import StageCounts, apply_batch

Outcome = tuple[Hl7MessageStatus, str | None]  # (status, PHI-free error) of one message
APPLIED: Outcome = (Hl7MessageStatus.APPLIED, None)
FRAME = re.compile(rb"\x0b(.*?)\x1c\r?", re.S)
MESSAGE_START = re.compile(rb"(?:^|[\r\n])(?=MSH)")
# File and batch header/trailer segments (FHS/BHS ... BTS/FTS) wrap messages; they are none.
BATCH_SEGMENT = re.compile(rb"(?:^|(?<=[\r\n]))(?:FHS|BHS|BTS|FTS)[^\r\n]*(?:\r\n|\r|\n)?")
HL7_STARTS = (b"MSH", b"\x0b", b"FHS", b"BHS")
NOT_HL7 = "not HL7: does not start with MSH, an MLLP block (0x0B) or a batch header (FHS/BHS)"


@dataclass
class Hl7Counts:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    errors: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    not_invitable: int = 0
    slots_opened: int = 0
    slots_filled: int = 0
    slots_reconciled: int = 0  # claimed slots an S12 for the winner confirmed in the EHR
    slot_conflicts: int = 0  # S12s for another patient at a claimed slot's time
    providers_created: int = 0
    control_ids_reused: int = 0
    warnings: int = 0  # messages applied with warnings (acknowledged AA with ERR severity W)
    merges_unmatched: int = 0  # A40 merges whose old MRN no provider of that feed carried
    # Existing providers that are not EHR-integrated and that messages named: a message never
    # flips one (`openslots providers set-integrated` does, on purpose); each named once.
    providers_not_integrated: list[str] = field(default_factory=list)
    # Files of a directory that are not HL7, with the reason: a drop never ignores one silently.
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def add(self, other: Hl7Counts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)
        self.providers_not_integrated = sorted(set(self.providers_not_integrated))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_messages(data: bytes) -> list[bytes]:
    """Messages in a file: MLLP-framed, or one after another, each starting with MSH at a
    segment start; FHS/BHS/BTS/FTS batch segments are dropped (they are not messages).

    Anything before the first MSH stays a "message" of its own, so that junk in a file meant
    as HL7 is rejected (AR) rather than lost.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    if b"\x0b" not in data:
        return _messages_in(data)
    messages: list[bytes] = []
    for block in FRAME.findall(data):
        # A block is one message as the sender framed it (kept byte for byte), unless it
        # holds a batch or several messages.
        several = _messages_in(block)
        messages += several if len(several) > 1 or BATCH_SEGMENT.search(block) else [block]
    return [m for m in messages if m.strip()]


def _messages_in(data: bytes) -> list[bytes]:
    if BATCH_SEGMENT.search(data):
        data = BATCH_SEGMENT.sub(b"", data)
    parts = MESSAGE_START.split(data)
    return [p.strip(b"\r\n") for p in parts if p.strip()]


def is_hl7(path: Path) -> bool:
    """Decided by content: MSH (after a UTF-8 BOM and white space), an MLLP block, or FHS/BHS."""
    with path.open("rb") as handle:
        head = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    return head.startswith(HL7_STARTS)


def message_files(paths: list[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """(files to read, skipped files with the reason). A file named on the command line or
    ending .hl7 is read whatever it holds (what is not HL7 in it is rejected, AR); any other
    file of a directory is read when its content is HL7, and listed as skipped otherwise."""
    found: list[Path] = []
    skipped: list[dict[str, str]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for candidate in sorted(p for p in path.rglob("*") if p.is_file()):
                if candidate.suffix.lower() == ".hl7" or is_hl7(candidate):
                    found.append(candidate)
                else:
                    skipped.append({"path": str(candidate), "reason": NOT_HL7})
        elif path.is_file():
            found.append(path)
        else:
            raise RosterFileError(f"no such file or directory: {path}")
    return found, skipped


@task(name="store-hl7-files", cache_policy=NO_CACHE)
@phi_safe("store-hl7-files")
def store_files(paths: list[str]) -> Hl7Counts:
    """Store every message of the files (or directories of files) given."""
    res = resources()
    engine = res.require_current_schema()
    counts = Hl7Counts()
    files, counts.skipped_files = message_files(paths)
    settings = res.settings
    for path in files:
        data = path.read_bytes()
        # A file meant as HL7 that holds no message at all is answered, not passed over.
        raws = split_messages(data) or [data]
        with engine.begin() as conn:
            results = receive(
                conn, raws, "file", settings.hl7_assigning_authority, settings.phone_region
            )
        counts.messages += len(results)
        counts.duplicates += sum(r.duplicate for r in results)
        counts.errors += sum(r.ack_code != "AA" and not r.duplicate for r in results)
        counts.control_ids_reused += sum(r.control_id_reused for r in results)
    if counts.skipped_files:
        run_logger().warning(
            "skipped %d files that are not HL7 (listed in skipped_files)",
            len(counts.skipped_files),
        )
    run_logger().info(
        "stored %d messages (%d duplicates, %d unreadable or incomplete)",
        counts.messages,
        counts.duplicates,
        counts.errors,
    )
    return counts


@task(name="ingest-hl7", cache_policy=NO_CACHE)
@phi_safe("ingest-hl7")
def ingest_stored() -> Hl7Counts:
    """Apply every stored message, in batches of `OPENSLOTS_HL7_BATCH_SIZE`."""
    return ingest_all(resources().settings)


def ingest_all(settings: Settings) -> Hl7Counts:
    engine = resources(settings).engine
    total = Hl7Counts()
    lease = dt.timedelta(seconds=settings.hl7_lease_seconds)
    while True:
        with engine.begin() as conn:
            # Marked `applying` under a lease in the same transaction (SKIP LOCKED on
            # PostgreSQL); a run killed before it marks the outcomes leaves them to the next
            # run once the lease has expired. Each batch claims anew: the loop drains a backlog.
            claimed = store.claim_stored(conn, settings.hl7_batch_size, clock.now(), lease)
        if not claimed:
            break
        total.add(ingest_batch(settings, claimed))
    run_logger().info(
        "ingest: %d applied, %d ignored, %d errors, %d slots opened, %d filled, "
        "%d reconciled, %d conflicts",
        total.applied,
        total.ignored,
        total.errors,
        total.slots_opened,
        total.slots_filled,
        total.slots_reconciled,
        total.slot_conflicts,
    )
    return total


def ingest_batch(settings: Settings, claimed: list[tuple[int, bytes]]) -> Hl7Counts:
    counts = Hl7Counts(messages=len(claimed))
    outcomes: dict[int, Outcome] = {}
    patients: list[tuple[int, Header, Patient]] = []
    merges: list[tuple[int, Header, Patient]] = []
    schedules: list[tuple[int, Header, Appointment]] = []
    for message_id, raw in claimed:
        try:
            message = parse(raw)
            header = message.header
            if header.message_type == "ADT" and header.trigger_event in DEMOGRAPHIC_EVENTS:
                patients.append(
                    (message_id, header, extract_patient(message, settings.hl7_assigning_authority))
                )
            elif header.message_type == "ADT" and header.trigger_event == "A40":
                merges.append(
                    (message_id, header, extract_patient(message, settings.hl7_assigning_authority))
                )
            elif header.message_type == "SIU" and header.trigger_event in (
                "S12",
                "S13",
                "S15",
                "S17",
            ):
                schedules.append(
                    (
                        message_id,
                        header,
                        extract_appointment(message, settings.hl7_assigning_authority),
                    )
                )
            else:
                outcomes[message_id] = (Hl7MessageStatus.IGNORED, None)
        except Exception as exc:
            outcomes[message_id] = (Hl7MessageStatus.ERROR, _reason(exc))
    engine = resources(settings).engine
    _apply_patients(settings, patients, outcomes, counts)
    with engine.begin() as conn:
        for message_id, header, patient in merges:
            # A40: the surviving MRN replaces the old one at the providers of that feed.
            if not merge_mrns(conn, patient.merged_mrn, patient.mrn, _feed(header)):
                counts.merges_unmatched += 1
            outcomes[message_id] = APPLIED
        opened: list[int] = []
        for message_id, header, appointment in schedules:
            outcomes[message_id] = _schedule(
                conn, settings, message_id, header, appointment, counts, opened
            )
        store.mark(conn, [(i, status, error) for i, (status, error) in outcomes.items()])
    if counts.providers_not_integrated:
        run_logger().warning(
            "%d existing providers named by messages are not EHR-integrated and were left so "
            "(providers_not_integrated; `openslots providers set-integrated NAME`)",
            len(counts.providers_not_integrated),
        )
    if opened:  # the slots this run opened are offered by this run
        offer_due(engine, settings, clock.now(), opened)
        slots_opened(opened)  # openslots.slot.opened, slot ids only (openslots/events.py)
    for status, _error in outcomes.values():
        if status == Hl7MessageStatus.APPLIED:
            counts.applied += 1
        elif status == Hl7MessageStatus.IGNORED:
            counts.ignored += 1
        else:
            counts.errors += 1
    return counts


def _reason(exc: Exception) -> str:
    from openslots.errors import OpenslotsError

    return str(exc) if isinstance(exc, OpenslotsError) else f"{type(exc).__name__} while applying"


def _feed(header: Header) -> Feed:
    return Feed(header.sending_application, header.sending_facility)


def _where(
    settings: Settings, header: Header, provider_name: str, provider_id: str, location: str
) -> tuple[str, str]:
    provider = provider_name or provider_id
    if provider and provider_id and provider_name:
        provider = f"{provider_name} ({provider_id})"
    provider = provider or settings.hl7_default_provider or header.sending_facility or "EHR"
    location = location or settings.hl7_default_location or header.sending_facility or "Main"
    return provider[:200], location[:200]


def _apply_patients(
    settings: Settings,
    patients: list[tuple[int, Header, Patient]],
    outcomes: dict[int, Outcome],
    counts: Hl7Counts,
) -> None:
    """Group patients by provider and location; each group is one roster batch (mode sync)."""
    groups: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = defaultdict(list)
    feeds: dict[tuple[str, str], Feed] = {}  # the feed that creates a provider is its feed
    untyped: set[int] = set()
    region = settings.phone_region
    for message_id, header, patient in patients:
        where = _where(
            settings, header, patient.provider_name, patient.provider_id, patient.location
        )
        groups[where].append((message_id, patient_row(header, patient)))
        feeds.setdefault(where, _feed(header))
        if patient.mrn_choice == MRN_ONLY:
            untyped.add(message_id)
    engine = resources(settings).engine
    for (provider, location), rows in groups.items():
        frame = pd.DataFrame([r for _, r in rows], columns=list(ROSTER_COLUMNS), dtype="str")
        ids = [i for i, _ in rows]
        # The receipt's rules (hl7_receive.judge_patients), here through pandera.
        frame, forgiven = screen_patients(frame)
        result = validate_chunk(frame, 0, region, model=FeedPatientRow)
        # The latest valid message about a patient wins; earlier valid ones are superseded
        # (applied through it), invalid ones are errors and supersede nothing.
        accepted = result.accepted.copy()
        latest = accepted.drop_duplicates(subset=["client_id"], keep="last")
        for position in accepted.loc[~accepted.index.isin(latest.index), "line"]:
            outcomes[ids[int(position)]] = APPLIED
        accepted = latest.copy()
        accepted["line"] = [ids[int(i)] for i in accepted["line"]]
        findings = [
            Rejection(
                ids[f.line],
                f.field,
                f.rule,
                str(hl7_finding(f.field, f.rule, region, f.severity != FindingSeverity.ERROR)),
                f.severity,
            )
            for f in result.rejections + result.warnings
        ]
        findings += [
            Rejection(
                ids[int(i)],
                name,
                rule,
                str(hl7_finding(name, rule, region, warning=True)),
                FindingSeverity.WARNING,
            )
            for i, name, rule in forgiven
        ]
        findings += [
            Rejection(
                i,
                "client_id",
                MRN_ONLY,
                str(hl7_finding("client_id", MRN_ONLY, warning=True)),
                FindingSeverity.WARNING,
            )
            for i in ids
            if i in untyped
        ]
        warned = {f.line for f in findings if f.severity == FindingSeverity.WARNING}
        lines = [int(i) for i in accepted["line"]] + sorted(
            {f.line for f in findings if f.severity == FindingSeverity.ERROR}
        )
        integrated = _provider_integrated(engine, provider)  # None: no such provider yet
        with engine.begin() as conn:
            batch_id = repo.start_batch(
                conn, provider, location, True, "hl7", ImportMode.SYNC, False
            )
        with engine.begin() as conn:
            repo.stage_rows(conn, batch_id, accepted)
            repo.record_findings(conn, batch_id, findings)
        rejected_lines = {f.line for f in findings if f.severity == FindingSeverity.ERROR}
        staged = StageCounts(
            len(accepted) + len(rejected_lines), len(rejected_lines), len(result.warnings)
        )
        summary = apply_batch(batch_id, staged, feed=feeds[provider, location])
        with engine.connect() as conn:
            batch_errors = batches.batch_errors(conn, batch_id)
        failed: dict[int, str] = {}
        for line, field_name, message in batch_errors:
            location = FIELD_LOCATIONS.get(field_name, ("PID", ""))[0]
            # Our own findings already name their segment and field; the batch's do not.
            failed.setdefault(
                line, message if message.startswith(location) else f"{location}: {message}"
            )
        for message_id in lines:
            outcomes[message_id] = (
                (Hl7MessageStatus.ERROR, failed[message_id]) if message_id in failed else APPLIED
            )
            counts.warnings += message_id not in failed and message_id in warned
        counts.rows_accepted += summary.accepted
        counts.rows_rejected += summary.rejected
        counts.not_invitable += int(
            ((accepted["email"] == "") & (accepted["mobile_phone"] == "")).sum()
        )
        counts.providers_created += int(integrated is None)
        if integrated is False:
            counts.providers_not_integrated = sorted({*counts.providers_not_integrated, provider})


def _provider_integrated(engine: Engine, provider: str) -> bool | None:
    """Whether the provider is EHR-integrated; None when there is no provider of that name."""
    with engine.connect() as conn:
        return provider_integrated(conn, provider)


def _schedule(
    conn: Connection,
    settings: Settings,
    message_id: int,
    header: Header,
    appointment: Appointment,
    counts: Hl7Counts,
    opened: list[int],
) -> Outcome:
    """S15/S17 open the slot, S12 fills it, S13 opens the earlier time and fills the new one."""
    if not appointment.start:
        return Hl7MessageStatus.ERROR, "AIS-4: the appointment has no start time"
    provider, location = _where(
        settings, header, appointment.provider_name, appointment.provider_id, appointment.location
    )
    target = repo.ensure_target(
        conn, provider, location, integrated=True, create=True, feed=_feed(header)
    )
    counts.providers_created += int(target.provider_created)
    if not target.integrated:
        counts.providers_not_integrated = sorted({*counts.providers_not_integrated, provider})
    zone = slot_repo.location_timezone(conn, target.location_id) or settings.default_timezone
    try:
        starts_at = parse_start(appointment.start, zone)
    except ValueError:
        return Hl7MessageStatus.ERROR, "AIS-4: the start time is not an HL7 timestamp"
    event = header.trigger_event
    now = clock.now()
    lead_cutoff = now + dt.timedelta(minutes=settings.alert_min_lead_minutes)
    if event == "S13":
        reopened, to_offer = slot_repo.reopen_moved_slot(
            conn, target.provider_id, appointment.filler_id, message_id, now,
            lead_cutoff=lead_cutoff,
        )  # fmt: skip
        counts.slots_opened += int(reopened)
        _offer(conn, settings, to_offer, now, opened)
    slot = slot_repo.SlotRef(
        target.provider_id,
        target.location_id,
        appointment.filler_id,
        appointment.start,
        appointment.duration_minutes,
        settings.alert_visit_types.get(appointment.visit_code),
    )
    if event in ("S15", "S17"):
        changed, to_offer = slot_repo.open_from_feed(
            conn, slot, starts_at, message_id, now, too_late=starts_at < lead_cutoff
        )
        counts.slots_opened += int(changed)
        _offer(conn, settings, to_offer, now, opened)
    else:
        changed, effect = slot_repo.book_from_feed(
            conn, slot, starts_at, message_id, now, appointment.patient_mrn
        )
        counts.slots_filled += int(changed)
        counts.slots_reconciled += int(effect is S12Effect.RECONCILE)
        counts.slot_conflicts += int(effect is S12Effect.CONFLICT)
    return APPLIED


def _offer(
    conn: Connection, settings: Settings, slot_id: int | None, now: dt.datetime, opened: list[int]
) -> None:
    """Write the offers of a slot the feed opened; the ingest run sends what is due after its
    transaction commits (`offer_due`)."""
    if slot_id is not None:
        slot_repo.offer_slot(
            conn,
            slot_id,
            now,
            max_per_week=settings.alert_max_per_week,
            default_timezone=settings.default_timezone,
        )
        opened.append(slot_id)
