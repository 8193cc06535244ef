"""Roster import steps: start a batch, stage the file chunk by chunk, apply it set-wise
(the report is published by openslots/tasks/publish.py).

Each task touches patient data only through the database and returns ids and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from openslots.connectors.csv_source import iter_chunks, sniff_layout
from openslots.connectors.database import batches
from openslots.connectors.database import fingerprints as fingerprint_repo
from openslots.connectors.database import roster as repo
from openslots.connectors.database.models import BatchStatus, ImportMode
from openslots.connectors.database.providers import Feed
from openslots.domain import clock, contact
from openslots.domain.fingerprints import SettledRows, hashed_columns, row_hashes, salt
from openslots.errors import OpenslotsError, RosterRejectedError
from openslots.resources import Resources, resources
from openslots.schemas.roster import EXTRA, ROSTER_COLUMNS, validate_chunk
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
    unchanged: int = 0  # rows skipped: settled by an earlier import (domain/fingerprints.py)
    fingerprinted: bool = False  # staged rows carry fingerprints: settle them when applied


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
    """Stream the file in chunks: skip the rows an earlier import settled (unchanged since),
    validate the others (pandera, lazy), stage accepted rows, record rejections and warnings.
    Memory is bounded by the chunk size, not the file size."""
    res = resources()  # one settings object for the whole step
    settings = res.settings
    try:
        layout = sniff_layout(Path(path))
        if layout.ignored:
            run_logger().info("ignoring %d unknown column(s)", len(layout.ignored))
        columns = hashed_columns([*layout.columns.values(), EXTRA], ROSTER_COLUMNS)
        settled = _settled_rows(res, batch_id, columns)
        chunks = iter_chunks(Path(path), layout, settings.chunk_size)
        counts = stage_chunks(batch_id, chunks, settled, res)
        reopened = _reopened(res, batch_id, settled)
        while reopened:
            # Skipped rows another row of the file needs beside it (a duplicate, a shared
            # Client ID or email + date of birth): read again and staged like the rest.
            again = iter_chunks(Path(path), layout, settings.chunk_size)
            more = stage_chunks(batch_id, _only(again, reopened), settled.hashing_only(), res)
            counts = StageCounts(
                counts.total_rows,
                counts.rejected + more.rejected,
                counts.warnings + more.warnings,
                counts.unchanged - len(reopened),
                fingerprinted=True,
            )
            reopened = _reopened(res, batch_id, settled)
        if settled.location is not None:
            with res.engine.begin() as conn:
                fingerprint_repo.forget_read_rows(conn, batch_id, *settled.location)
        if counts.unchanged:
            run_logger().info("%d rows unchanged since the last import: skipped", counts.unchanged)
        return counts
    except BaseException as exc:
        _fail(batch_id, exc)
        raise


def _settled_rows(res: Resources, batch_id: int, columns: list[str]) -> SettledRows:
    """The settled fingerprints of the batch's provider + location + mode (none for a new
    provider or location), keyed for this file's columns."""
    with res.engine.connect() as conn:
        batch = batches.batch_request(conn, batch_id)
        key = salt(columns, res.settings.phone_region, batch.mode.value)
        ids = fingerprint_repo.location_ids(conn, batch.provider_name, batch.location_name)
        if ids is None:
            return SettledRows(key, columns, np.empty(0, np.int64))
        if not res.settings.roster_skip_unchanged:
            return SettledRows(key, columns, np.empty(0, np.int64), ids)
        hashes = fingerprint_repo.settled_hashes(conn, *ids, batch.mode.value, clock.today())
    return SettledRows(key, columns, hashes, ids)


def _reopened(res: Resources, batch_id: int, settled: SettledRows) -> set[int]:
    """Lines of skipped rows that must be read after all (see `SettledRows.reopen`)."""
    if not settled.skipped or settled.location is None:
        return set()
    with res.engine.connect() as conn:
        shared = fingerprint_repo.reopened_by_batch(conn, batch_id, *settled.location)
    return settled.reopen(shared)


def _only(
    chunks: Iterable[tuple[int, pd.DataFrame, float]], lines: set[int]
) -> Iterator[tuple[int, pd.DataFrame, float]]:
    """The rows of these lines, each chunk keeping its first line (rows carry their line in
    the `_line` column set here)."""
    wanted = np.fromiter(lines, dtype=np.int64)
    for first_line, chunk, done in chunks:
        at = first_line + np.arange(len(chunk))
        keep = np.isin(at, wanted)
        if keep.any():
            yield first_line, chunk[keep].assign(**{LINE: at[keep]}), done


LINE = "_line"


def stage_chunks(
    batch_id: int,
    chunks: Iterable[tuple[int, pd.DataFrame, float]],
    settled: SettledRows | None = None,
    res: Resources | None = None,
) -> StageCounts:
    """Validate and stage (first line, chunk with canonical columns, fraction done) chunks.
    With `settled`, rows it holds are skipped and the staged rows carry their fingerprint.

    The rows left after skipping are gathered up to a chunk's size before they are validated:
    a re-sync changing 1 % of a million rows validated ten slices of 1,000 rows, and pandera
    costs ~0.1 s a call whatever the size (1.7 s of a 4.6 s stage); gathered, it is one call."""
    res = res or resources()
    settings, engine = res.settings, res.engine
    logger = run_logger()
    counts = _Tally()
    pending = _Pending()
    for first_line, chunk, done in chunks:
        at = chunk.pop(LINE).to_numpy() if LINE in chunk else first_line + np.arange(len(chunk))
        hashes = None
        if settled is not None:
            hashes = row_hashes(chunk, settled.columns, settled.key)
            skip = settled.settled(hashes)
            if skip.any():
                settled.skip(at[skip], hashes[skip])
                counts.unchanged += int(skip.sum())
                chunk, at, hashes = chunk[~skip], at[~skip], hashes[~skip]
        if not pending.takes(chunk):  # other columns (a reader's flag): never mixed
            _stage_pending(batch_id, pending, counts, res)
        pending.add(chunk, at, hashes)
        if pending.rows >= settings.chunk_size:
            _stage_pending(batch_id, pending, counts, res)
        else:
            with engine.begin() as conn:
                batches.heartbeat(conn, batch_id)
        _progress(logger, counts.total + pending.rows + counts.unchanged, done, counts)
    _stage_pending(batch_id, pending, counts, res)
    return StageCounts(
        counts.total + counts.unchanged,
        counts.rejected,
        counts.warnings,
        counts.unchanged,
        fingerprinted=settled is not None,
    )


@dataclass
class _Tally:
    total: int = 0  # rows validated (blank rows are not rows)
    rejected: int = 0
    warnings: int = 0
    unchanged: int = 0


class _Pending:
    """Rows read and not yet validated: frames with the same columns, their lines and
    fingerprints (None when the import does not skip rows)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.frames: list[pd.DataFrame] = []
        self.lines: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.rows = 0

    def takes(self, chunk: pd.DataFrame) -> bool:
        return not self.frames or list(chunk.columns) == list(self.frames[0].columns)

    def add(self, chunk: pd.DataFrame, at: np.ndarray, hashes: np.ndarray | None) -> None:
        if chunk.empty:
            return
        self.frames.append(chunk)
        self.lines.append(at)
        if hashes is not None:
            self.hashes.append(hashes)
        self.rows += len(chunk)

    def take(self) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
        frames, lines, hashes = self.frames, self.lines, self.hashes
        self.clear()
        # One frame as it is; several with a fresh index (readings may share labels).
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return frame, np.concatenate(lines), np.concatenate(hashes) if hashes else None


def _stage_pending(batch_id: int, pending: _Pending, counts: _Tally, res: Resources) -> None:
    """Validate the gathered rows, stage the accepted ones and record the findings."""
    if not pending.rows:
        return
    chunk, at, hashes = pending.take()
    lines = pd.Series(at, index=chunk.index, dtype="int64")
    result = validate_chunk(chunk, int(at[0]), res.settings.phone_region, lines=lines)
    accepted = result.accepted
    if hashes is not None:
        # By index: validation dropped blank and rejected rows. (An empty frame given a
        # Series adopts its index, so the values go in as an array.)
        by_row = pd.Series(hashes, index=chunk.index).reindex(accepted.index)
        accepted = accepted.assign(row_hash=by_row.to_numpy())
    with res.engine.begin() as conn:
        batches.heartbeat(conn, batch_id)
        repo.stage_rows(conn, batch_id, accepted)
        repo.record_findings(conn, batch_id, result.rejections + result.warnings)
    counts.total += result.total_rows
    counts.rejected += len({r.line for r in result.rejections})
    counts.warnings += len(result.warnings)


def _progress(logger: Any, seen: int, done: float, counts: _Tally) -> None:
    logger.info(
        "read %d rows (%.0f%% of file), %d rejected, %d unchanged",
        seen,
        done * 100,
        counts.rejected,
        counts.unchanged,
    )
    for listener in progress_listeners:
        listener(seen, done)


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
            repo.plan_for_warm_tables(conn)
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
                # Many new clients (a first import): the joins below need to know. A nightly
                # re-sync adds a few and skips the ANALYZE (~1 s at 100k rows), and so does a
                # batch the statistics already cover (4.4 s of a 27 s HL7 ingest otherwise).
                analyse = new_clients * 10 >= staged.total_rows and (
                    repo.clients_outgrow_statistics(conn, target.provider_id, new_clients)
                )
                repo.upsert_clients(conn, batch_id, target.provider_id)
                if analyse:
                    repo.refresh_statistics(conn, "clients")
                mapped = repo.apply_mrn_updates(conn, batch_id, target.provider_id)
                invite = feed is None or repo.auto_invites(conn, target.provider_id)
                queued = repo.queue_invitations(conn, batch_id, target) if invite else 0
                fingerprint_repo.forget_changed_clients(conn, batch_id, target.provider_id)
                if staged.fingerprinted:
                    today = clock.today()
                    fingerprint_repo.settle(
                        conn,
                        batch_id,
                        target.provider_id,
                        target.location_id,
                        mode.value,
                        today,
                        oldest_dob=contact.date_bounds(today)[0].date(),
                    )
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
