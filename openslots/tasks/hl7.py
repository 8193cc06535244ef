"""HL7 ingest: store files of messages, then apply stored messages in batches.

ADT demographics become patient rows that go through the roster's own validation, MRN mapping
and invitation queueing (one import batch per provider and location); SIU messages open and
fill slots; A40 merges MRNs. Tasks return counts only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
from collections import defaultdict
from collections.abc import Iterator
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
from openslots.connectors.hl7.files import message_files, split_messages
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
from openslots.events import slots_opened
from openslots.resources import resources
from openslots.schemas.roster import (
    NAME_COLUMNS,
    ROSTER_COLUMNS,
    FeedPatientRow,
    Rejection,
    validate_chunk,
)
from openslots.settings import Settings
from openslots.tasks._safety import phi_safe, run_logger
from openslots.tasks.hl7_receive import (
    DEMOGRAPHIC_EVENTS,
    FIELD_LOCATIONS,
    RECEIPTS,
    Reading,
    hl7_finding,
    patient_row,
    receive,
    screen_patients,
)
from openslots.tasks.offers import offer_due
from openslots.tasks.roster import StageCounts, apply_batch

Outcome = tuple[Hl7MessageStatus, str | None]  # (status, PHI-free error) of one message
APPLIED: Outcome = (Hl7MessageStatus.APPLIED, None)


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


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a file or a batch of messages is read and applied.

    Reading a file allocates tens of container objects per message, alive until the file is
    stored: they survive the young generations, and every few hundred thousand of them
    trigger a full collection, which in a Prefect worker (a million long-lived objects)
    costs ~0.5 s and finds nothing to free (py-spy: 12-30 % of the store and ingest steps,
    on list comprehensions that merely allocate). Reference counting frees the file's
    objects when it is done; the collector runs again, as configured, after each block (so
    cycles wait at most one file or batch). A block inside another (or one that started
    with the collector off) leaves it as it found it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _settings_key(settings: Settings) -> tuple[str | None, str]:
    """The settings a reading depends on."""
    return settings.hl7_assigning_authority, settings.phone_region


@task(name="store-hl7-files", cache_policy=NO_CACHE)
@phi_safe("store-hl7-files")
def store_files(paths: list[str]) -> Hl7Counts:
    """Store every message of the files (or directories of files) given."""
    res = resources()
    engine = res.require_current_schema()
    counts = Hl7Counts()
    files, counts.skipped_files = message_files(paths)
    settings = res.settings
    key = _settings_key(settings)
    RECEIPTS.clear()
    _store_each(files, engine, settings, key, counts)
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


def _store_each(
    files: list[Path],
    engine: Engine,
    settings: Settings,
    key: tuple[str | None, str],
    counts: Hl7Counts,
) -> None:
    """Receive and store each file's messages in one transaction per file; keep the readings."""
    for path in files:
        data = path.read_bytes()
        # A file meant as HL7 that holds no message at all is answered, not passed over.
        raws = split_messages(data) or [data]
        readings: dict[int, Reading] = {}
        with collector_paused(), engine.begin() as conn:
            results = receive(
                conn,
                raws,
                "file",
                settings.hl7_assigning_authority,
                settings.phone_region,
                readings,
            )
        for position, reading in readings.items():  # committed: ingest may claim them
            stored = results[position]
            if stored.ack_code == "AA" and not stored.duplicate:
                RECEIPTS.keep(stored.message_id, raws[position], key, reading)
        counts.messages += len(results)
        counts.duplicates += sum(r.duplicate for r in results)
        counts.errors += sum(r.ack_code != "AA" and not r.duplicate for r in results)
        counts.control_ids_reused += sum(r.control_id_reused for r in results)


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
            # The claim answers content hashes: the bytes of a message read on receipt (a
            # file drop's) are not fetched again, only those of the others (`ingest_batch`).
            claimed = store.claim_stored_digests(conn, settings.hl7_batch_size, clock.now(), lease)
        if not claimed:
            break
        with collector_paused():  # a batch's messages and frames are alive at once
            total.add(ingest_batch(settings, claimed))
    RECEIPTS.clear()  # what is left was claimed by another run (or not stored): read anew
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


def ingest_batch(settings: Settings, claimed: list[tuple[int, str]]) -> Hl7Counts:
    """Apply a batch of claimed messages, given as (message id, content hash)."""
    counts = Hl7Counts(messages=len(claimed))
    outcomes: dict[int, Outcome] = {}
    patients: list[Applicable] = []
    merges: list[tuple[int, Header, Patient]] = []
    schedules: list[tuple[int, Header, Appointment]] = []
    key = _settings_key(settings)
    today = clock.today()  # the readings' day is compared once per batch, not per message
    readings: dict[int, Reading] = {}
    if len(RECEIPTS):
        for message_id, digest in claimed:
            reading = RECEIPTS.take(message_id, digest, key, today)
            if reading is not None:  # a file drop's message, read and checked on receipt
                readings[message_id] = reading
    engine = resources(settings).engine
    raws = _raws(engine, [i for i, _ in claimed if i not in readings])
    for message_id, _digest in claimed:
        reading = readings.get(message_id)
        if reading is not None:
            patients.append(_applicable_reading(settings, message_id, reading))
            continue
        try:
            message = parse(raws[message_id])
            header = message.header
            if header.message_type == "ADT" and header.trigger_event in DEMOGRAPHIC_EVENTS:
                patient = extract_patient(message, settings.hl7_assigning_authority)
                patients.append(_applicable(settings, message_id, header, patient))
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
    _apply_patients(settings, patients, outcomes, counts, raws)
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


def _raws(engine: Engine, ids: list[int]) -> dict[int, bytes]:
    """The raw bytes of claimed messages (ours under the lease: they do not change)."""
    if not ids:
        return {}
    with engine.connect() as conn:
        return store.stored_raws(conn, ids)


def _reason(exc: Exception) -> str:
    from openslots.errors import OpenslotsError

    return str(exc) if isinstance(exc, OpenslotsError) else f"{type(exc).__name__} while applying"


def _feed(header: Header) -> Feed:
    return Feed(header.sending_application, header.sending_facility)


def _where(
    settings: Settings, header: Header, provider_name: str, provider_id: str, location: str
) -> tuple[str, str]:
    return _where_from(settings, header.sending_facility, provider_name, provider_id, location)


def _where_from(
    settings: Settings, facility: str, provider_name: str, provider_id: str, location: str
) -> tuple[str, str]:
    provider = provider_name or provider_id
    if provider and provider_id and provider_name:
        provider = f"{provider_name} ({provider_id})"
    provider = provider or settings.hl7_default_provider or facility or "EHR"
    location = location or settings.hl7_default_location or facility or "Main"
    return provider[:200], location[:200]


# What validating a group of patient rows gives (`line` = the row's position in the group):
# the accepted rows, normalised, with a `line` column; errors and phone warnings (as
# `validate_chunk` reports them); the other warnings as (position, field, rule).
Validated = tuple[pd.DataFrame, list[Rejection], list[Rejection], list[tuple[Any, str, str]]]


def _validate_rows(rows: list[dict[str, str]], region: str) -> Validated:
    """The receipt's rules (hl7_receive.judge_patients), here through pandera."""
    frame = pd.DataFrame(rows, columns=list(ROSTER_COLUMNS), dtype="str")
    frame, forgiven = screen_patients(frame)
    result = validate_chunk(frame, 0, region, model=FeedPatientRow)
    return result.accepted, result.rejections, result.warnings, forgiven


def _row_again(raw: bytes, authority: str | None) -> dict[str, str]:
    """The roster row of a message its receipt read, read again from the message. Not from
    the reading's values: they are the row after the checks, a junk email or an unusable
    phone already dropped, so checking them again would not find those warnings again."""
    message = parse(raw)
    return patient_row(message.header, extract_patient(message, authority))


def _validated_on_receipt(checked: list[Reading]) -> Validated:
    """`_validate_rows` for rows the receipt already normalised and checked without an error
    (a file drop's readings): the same frame and findings, in the same order, without
    checking again (tests/tasks/test_hl7_handover.py compares the two)."""
    accepted = pd.DataFrame([c.values for c in checked], columns=list(ROSTER_COLUMNS), dtype="str")
    accepted.insert(0, "line", pd.Series(range(len(checked)), index=accepted.index, dtype="int64"))
    phone = [
        Rejection(position, "mobile_phone", "mobile_number", "", "warning")
        for position, c in enumerate(checked)
        if ("mobile_phone", "mobile_number") in c.forgiven
    ]
    # screen_patients' order: junk emails, then odd names column by column.
    forgiven: list[tuple[Any, str, str]] = [
        (position, "email", "email_format")
        for position, c in enumerate(checked)
        if ("email", "email_format") in c.forgiven
    ]
    forgiven += [
        (position, column, "name_characters")
        for column in NAME_COLUMNS
        for position, c in enumerate(checked)
        if (column, "name_characters") in c.forgiven
    ]
    return accepted, [], phone, forgiven


# An ADT patient to apply: (message id, (provider, location), its feed, MRN untyped, and
# either its roster row to check or the receipt's reading of it).
Applicable = tuple[int, tuple[str, str], Feed, bool, dict[str, str] | Reading]


def _applicable(
    settings: Settings, message_id: int, header: Header, patient: Patient
) -> Applicable:
    where = _where(settings, header, patient.provider_name, patient.provider_id, patient.location)
    untyped = patient.mrn_choice == MRN_ONLY
    return message_id, where, _feed(header), untyped, patient_row(header, patient)


def _applicable_reading(settings: Settings, message_id: int, reading: Reading) -> Applicable:
    """`_applicable` for a message read on receipt (the same `_where` and feed)."""
    facility = reading.sending_facility
    where = _where_from(
        settings, facility, reading.provider_name, reading.provider_id, reading.location
    )
    feed = Feed(reading.sending_application, facility)
    return message_id, where, feed, reading.mrn_untyped, reading


def _apply_patients(
    settings: Settings,
    patients: list[Applicable],
    outcomes: dict[int, Outcome],
    counts: Hl7Counts,
    raws: dict[int, bytes],
) -> None:
    """Group patients by provider and location; each group is one roster batch (mode sync).

    A group whose every message has its receipt's reading is applied from the readings; a
    group with any other message (stored by a listener, requeued) is read and checked again
    as a whole, from the messages (`raws`, by message id: those of messages read on receipt
    are fetched then), as if no reading were kept."""
    groups: dict[tuple[str, str], list[tuple[int, dict[str, str] | Reading]]] = defaultdict(list)
    feeds: dict[tuple[str, str], Feed] = {}  # the feed that creates a provider is its feed
    untyped: set[int] = set()
    region = settings.phone_region
    for message_id, where, feed, mrn_untyped, row in patients:
        groups[where].append((message_id, row))
        feeds.setdefault(where, feed)
        if mrn_untyped:
            untyped.add(message_id)
    engine = resources(settings).engine
    for (provider, location), rows in groups.items():
        ids = [i for i, _ in rows]
        on_receipt = [r for _, r in rows if isinstance(r, Reading)]
        if len(on_receipt) == len(rows):
            validated = _validated_on_receipt(on_receipt)
        else:  # stored by a listener, or requeued: read and checked here
            authority = settings.hl7_assigning_authority
            raws |= _raws(engine, [i for i, r in rows if isinstance(r, Reading)])
            validated = _validate_rows(
                [r if isinstance(r, dict) else _row_again(raws[i], authority) for i, r in rows],
                region,
            )
        accepted, rejections, phone_warnings, forgiven = validated
        # The latest valid message about a patient wins; earlier valid ones are superseded
        # (applied through it), invalid ones are errors and supersede nothing.
        accepted = accepted.copy()
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
            for f in rejections + phone_warnings
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
            len(accepted) + len(rejected_lines), len(rejected_lines), len(phone_warnings)
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
