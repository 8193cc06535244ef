"""Import batches as read back: what a batch was asked to do, and what it found and did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from openslots.connectors.database.models import (
    FindingSeverity,
    ImportBatch,
    ImportMode,
    ImportRejection,
)


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
