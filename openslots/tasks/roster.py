"""Roster import steps: start a batch, stage the file chunk by chunk, apply it set-wise
(the report is published by openslots/tasks/publish.py).

Each task touches patient data only through the database and returns ids and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from openslots.connectors.csv_source import iter_chunks, sniff_layout
from openslots.connectors.database import batches
from openslots.connectors.database import roster as repo
from openslots.connectors.database.models import BatchStatus, ImportMode
from openslots.connectors.database.providers import Feed
from openslots.errors import OpenslotsError, RosterRejectedError
from openslots.resources import resources
from openslots.schemas.roster import validate_chunk
from openslots.tasks._safety import phi_safe, run_logger

# In-process listeners for a progress bar (the CLI registers one); called with
# (rows read so far, fraction of the file read). Never sent to Prefect.
progress_listeners: list[Callable[[int, float], None]] = []


@dataclass(frozen=True)
class ImportStart:
    batch_id: int


@dataclass(frozen=True)
class StageCounts:
    total_rows: int
    rejected: int
    warnings: int


@dataclass(frozen=True)
class ImportSummary:
    """What `roster import --json` prints, minus the rejection list (read from the database)."""

    batch_id: int
    mode: str
    status: str
    total_rows: int
    accepted: int
    rejected: int
    warnings: int
    new_clients: int
    updated_clients: int
    mrns_mapped: int
    needs_review: int
    queued_invitations: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@task(name="start-roster-import", cache_policy=NO_CACHE)
@phi_safe("start-roster-import")
def start_import(
    path: str, provider: str, location: str, mode: str, strict: bool, integrated: bool
) -> ImportStart:
    """Open an import batch (the provider and location are resolved when it applies)."""
    with resources().require_current_schema().begin() as conn:
        abandoned = batches.end_abandoned_batches(conn)
        batch_id = repo.start_batch(
            conn, provider, location, integrated, Path(path).name, ImportMode(mode), strict
        )
    if abandoned:
        run_logger().warning("batches %s had lost their process: marked interrupted", abandoned)
    run_logger().info("import batch %s started (mode=%s, strict=%s)", batch_id, mode, strict)
    return ImportStart(batch_id)


@task(name="stage-roster", cache_policy=NO_CACHE)
@phi_safe("stage-roster")
def stage_roster(batch_id: int, path: str) -> StageCounts:
    """Stream the file in chunks: validate each (pandera, lazy), stage accepted rows, record
    rejections and warnings. Memory is bounded by the chunk size, not the file size."""
    settings = resources().settings
    try:
        layout = sniff_layout(Path(path))
        if layout.ignored:
            run_logger().info("ignoring %d unknown column(s)", len(layout.ignored))
        chunks = iter_chunks(Path(path), layout, settings.chunk_size)
        return stage_chunks(batch_id, chunks)
    except BaseException as exc:
        _fail(batch_id, exc)
        raise


def stage_chunks(batch_id: int, chunks: Iterable[tuple[int, pd.DataFrame, float]]) -> StageCounts:
    """Validate and stage (first line, chunk with canonical columns, fraction done) chunks."""
    res = resources()
    settings, engine = res.settings, res.engine
    logger = run_logger()
    total = rejected = warnings = 0
    for first_line, chunk, done in chunks:
        result = validate_chunk(chunk, first_line, settings.phone_region)
        with engine.begin() as conn:
            batches.heartbeat(conn, batch_id)
            repo.stage_rows(conn, batch_id, result.accepted)
            repo.record_findings(conn, batch_id, result.rejections + result.warnings)
        total += result.total_rows
        rejected += len({r.line for r in result.rejections})
        warnings += len(result.warnings)
        logger.info("validated %d rows (%.0f%% of file), %d rejected", total, done * 100, rejected)
        for listener in progress_listeners:
            listener(total, done)
    return StageCounts(total, rejected, warnings)


@task(name="apply-roster", cache_policy=NO_CACHE)
@phi_safe("apply-roster")
def apply_roster(batch_id: int, staged: StageCounts) -> ImportSummary:
    """In one transaction: drop in-file duplicates, match connections (reject rows of clients
    already Approved in invite mode), then, unless a strict import found rejections, create the
    provider/location on first use, upsert clients, map MRNs and queue invitations."""
    return apply_batch(batch_id, staged)


def apply_batch(batch_id: int, staged: StageCounts, *, feed: Feed | None = None) -> ImportSummary:
    """`apply_roster` as a plain function. A `feed` batch (HL7) queues invitations only when
    the provider invites feed patients automatically, and never flips an existing provider to
    EHR-integrated (providers.ensure_target)."""
    engine = resources().engine
    try:
        with engine.begin() as conn:
            batches.heartbeat(conn, batch_id)
            batch = batches.batch_request(conn, batch_id)
            mode = batch.mode
            repo.refresh_statistics(conn, "roster_staging")
            duplicates = repo.reject_in_file_duplicates(conn, batch_id)
            provider_id = repo.provider_id_named(conn, batch.provider_name)
            outcome = (
                repo.match_connections(conn, batch_id, provider_id, mode)
                if provider_id is not None
                else repo.MatchOutcome([], [])
            )
            repo.record_findings(conn, batch_id, duplicates + outcome.rejections + outcome.reviews)
            rejected = staged.rejected + len(duplicates) + len(outcome.rejections)
            strict_failure = None
            if batch.strict and rejected:
                repo.clear_staging(conn, batch_id)
                repo.finish_batch(
                    conn,
                    batch_id,
                    BatchStatus.FAILED,
                    total_rows=staged.total_rows,
                    rejected=rejected,
                    accepted=0,
                    warnings=staged.warnings,
                    error="strict import: rejected rows, nothing written",
                )
                strict_failure = RosterRejectedError(batch_id, rejected, staged.total_rows)
            else:
                target = repo.ensure_target(
                    conn,
                    batch.provider_name,
                    batch.location_name,
                    integrated=batch.integrated,
                    create=True,
                    feed=feed,
                )
                new_clients, updated_clients = repo.count_client_changes(
                    conn, batch_id, target.provider_id
                )
                repo.upsert_clients(conn, batch_id, target.provider_id)
                if new_clients * 10 >= staged.total_rows:
                    # Many new clients (a first import): the joins below need to know. A
                    # nightly re-sync adds a few and skips the ANALYZE (~1 s at 100k rows).
                    repo.refresh_statistics(conn, "clients")
                mapped = repo.apply_mrn_updates(conn, batch_id, target.provider_id)
                invite = feed is None or repo.auto_invites(conn, target.provider_id)
                queued = repo.queue_invitations(conn, batch_id, target) if invite else 0
                repo.clear_staging(conn, batch_id)
                summary = ImportSummary(
                    batch_id=batch_id,
                    mode=mode.value,
                    status=BatchStatus.COMPLETED.value,
                    total_rows=staged.total_rows,
                    accepted=staged.total_rows - rejected,
                    rejected=rejected,
                    warnings=staged.warnings,
                    new_clients=new_clients,
                    updated_clients=updated_clients,
                    mrns_mapped=mapped,
                    needs_review=len(outcome.reviews),
                    queued_invitations=queued,
                )
                counts = summary.as_dict()
                for key in ("batch_id", "mode", "status"):
                    counts.pop(key)
                repo.finish_batch(
                    conn,
                    batch_id,
                    BatchStatus.COMPLETED,
                    provider_id=target.provider_id,
                    location_id=target.location_id,
                    **counts,
                )
    except BaseException as exc:
        _fail(batch_id, exc)
        raise
    if strict_failure is not None:
        raise strict_failure
    run_logger().info(
        "batch %s: %d accepted, %d rejected, %d invitations queued",
        batch_id,
        summary.accepted,
        summary.rejected,
        summary.queued_invitations,
    )
    return summary


def _fail(batch_id: int, exc: BaseException) -> None:
    """Mark the batch failed (an error) or interrupted (Ctrl-C, SIGTERM, cancellation) with a
    PHI-free reason, and drop its staged rows in the same transaction."""
    if isinstance(exc, Exception):
        status = BatchStatus.FAILED
        reason = str(exc) if isinstance(exc, OpenslotsError) else type(exc).__name__
    else:
        # str(): the signal's name for the CLI's Interrupted; Prefect's TerminationSignal...
        status, reason = BatchStatus.INTERRUPTED, f"interrupted ({str(exc) or type(exc).__name__})"
    with resources().engine.begin() as conn:
        batches.end_batch(conn, batch_id, status, reason + "; staged rows removed")
