"""Import batches as read back: what a batch was asked to do, and what it found and did."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from openslots.connectors.database.models import (
    BatchStatus,
    FindingSeverity,
    ImportBatch,
    ImportMode,
    ImportRejection,
    RosterMatch,
    RosterStaging,
)
from openslots.domain import clock
from openslots.domain.batches import is_abandoned, worker_name

_worker: tuple[int, str] | None = None


def this_worker() -> str:
    """This process's `worker_id` ("host:pid:nonce"; a fork gets its own)."""
    global _worker
    if _worker is None or _worker[0] != os.getpid():
        name = worker_name(socket.gethostname(), os.getpid(), secrets.token_hex(6))
        _worker = (os.getpid(), name)
    return _worker[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def heartbeat(conn: Connection, batch_id: int) -> None:
    """Say that this batch's process is alive (and, on PostgreSQL, hold its row until commit)."""
    conn.execute(
        update(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .values(heartbeat_at=clock.now(), worker_id=this_worker())
    )


def end_batch(conn: Connection, batch_id: int, status: BatchStatus, reason: str) -> bool:
    """Mark a running batch `status` with a PHI-free reason and delete its staged rows, in
    `conn`'s transaction. False (and nothing done) when the batch no longer runs."""
    ended = conn.execute(
        update(ImportBatch)
        .where(ImportBatch.id == batch_id, ImportBatch.status == BatchStatus.RUNNING)
        .values(status=status, error=reason, finished_at=clock.now())
    ).rowcount
    if ended:
        conn.execute(delete(RosterStaging).where(RosterStaging.batch_id == batch_id))
        conn.execute(delete(RosterMatch).where(RosterMatch.batch_id == batch_id))
    return bool(ended)


def end_batches_of_this_worker(
    conn: Connection, status: BatchStatus, reason: str
) -> list[tuple[int, str]]:
    """End (as `status`) whatever this process left running; returns (id, status) of every
    batch this process started, after the clean-up."""
    mine = ImportBatch.worker_id == this_worker()
    for (batch_id,) in conn.execute(
        select(ImportBatch.id).where(mine, ImportBatch.status == BatchStatus.RUNNING)
    ).all():
        end_batch(conn, batch_id, status, reason)
    rows = conn.execute(select(ImportBatch.id, ImportBatch.status).where(mine).order_by("id"))
    return [(int(i), str(s)) for i, s in rows]


def end_abandoned_batches(conn: Connection) -> list[int]:
    """Running batches whose process died (see `is_abandoned`) become interrupted and lose
    their staged rows; returns their ids."""
    now, host = clock.now(), socket.gethostname()
    rows = conn.execute(
        select(
            ImportBatch.id,
            ImportBatch.worker_id,
            func.coalesce(ImportBatch.heartbeat_at, ImportBatch.started_at),
        ).where(ImportBatch.status == BatchStatus.RUNNING)
    ).all()
    ended = []
    for batch_id, worker_id, seen in rows:
        if worker_id != this_worker() and is_abandoned(
            worker_id, seen, now, host=host[:40], alive=_alive
        ):
            reason = "interrupted: its process stopped (no heartbeat); staged rows removed"
            if end_batch(conn, batch_id, BatchStatus.INTERRUPTED, reason):
                ended.append(int(batch_id))
    return ended


def list_batches(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The latest import batches, newest first: status, counts, times and reason."""
    b = ImportBatch
    rows = conn.execute(
        select(
            b.id.label("batch_id"),
            b.status,
            b.mode,
            b.provider_name.label("provider"),
            b.location_name.label("location"),
            b.source,
            b.total_rows,
            b.accepted,
            b.rejected,
            b.queued_invitations,
            b.started_at,
            b.finished_at,
            b.error.label("reason"),
        )
        .order_by(b.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(row) for row in rows]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """What an import batch was started with."""

    provider_name: str
    location_name: str
    integrated: bool
    mode: ImportMode
    strict: bool


def batch_request(conn: Connection, batch_id: int) -> BatchRequest:
    row = conn.execute(
        select(
            ImportBatch.provider_name,
            ImportBatch.location_name,
            ImportBatch.integrated,
            ImportBatch.mode,
            ImportBatch.strict,
        ).where(ImportBatch.id == batch_id)
    ).one()
    return BatchRequest(
        row.provider_name, row.location_name, bool(row.integrated), ImportMode(row.mode), row.strict
    )


def findings_by_rule(conn: Connection, batch_id: int) -> dict[tuple[str, str, str], int]:
    """{(severity, field, rule): rows} of a batch, counted by the database."""
    rows = conn.execute(
        select(ImportRejection.severity, ImportRejection.field, ImportRejection.rule, func.count())
        .where(ImportRejection.batch_id == batch_id)
        .group_by(ImportRejection.severity, ImportRejection.field, ImportRejection.rule)
    )
    return {(severity, field, rule): int(n) for severity, field, rule, n in rows}


def batch_errors(conn: Connection, batch_id: int) -> list[tuple[int, str, str]]:
    """(line, field, message) of every rejected line of a batch, in the order found."""
    rows = conn.execute(
        select(ImportRejection.line, ImportRejection.field, ImportRejection.message)
        .where(
            ImportRejection.batch_id == batch_id,
            ImportRejection.severity == FindingSeverity.ERROR,
        )
        .order_by(ImportRejection.id)
    )
    return [(int(line), field, message) for line, field, message in rows]


def batch_report(conn: Connection, batch_id: int) -> dict[str, Any]:
    """Counts and findings of an import batch, as `roster import --json` prints them.

    Raises NoResultFound for an unknown batch.
    """
    batch = conn.execute(select(ImportBatch.__table__).where(ImportBatch.id == batch_id)).one()
    findings = conn.execute(
        select(
            ImportRejection.line,
            ImportRejection.field,
            ImportRejection.rule,
            ImportRejection.message,
            ImportRejection.severity,
        )
        .where(ImportRejection.batch_id == batch_id)
        .order_by(ImportRejection.line, ImportRejection.id)
    ).all()
    by_severity: dict[str, list[dict[str, Any]]] = {severity: [] for severity in FindingSeverity}
    for line, field, rule, message, severity in findings:
        by_severity.setdefault(severity, []).append(
            {"line": line, "field": field, "rule": rule, "message": message}
        )
    return {
        "batch_id": batch_id,
        "status": batch.status,
        "reason": batch.error,
        "mode": batch.mode,
        "total_rows": batch.total_rows,
        "accepted": batch.accepted,
        "rejected": batch.rejected,
        "new_clients": batch.new_clients,
        "updated_clients": batch.updated_clients,
        "mrns_mapped": batch.mrns_mapped,
        "needs_review": batch.needs_review,
        "queued_invitations": batch.queued_invitations,
        "rejections": by_severity[FindingSeverity.ERROR],
        "warnings": by_severity[FindingSeverity.WARNING],
        "reviews": by_severity[FindingSeverity.REVIEW],
    }
