"""Read-side reports: what an import did, for the CLI, the demo and scripts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from openslots.connectors.database import get_engine
from openslots.connectors.database.models import ImportBatch, ImportRejection


def batch_report(batch_id: int) -> dict[str, Any]:
    """Counts and findings of an import batch, as `roster import --json` prints them.

    Raises NoResultFound for an unknown batch.
    """
    with get_engine().connect() as conn:
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
    by_severity: dict[str, list[dict[str, Any]]] = {"error": [], "warning": [], "review": []}
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
        "rejections": by_severity["error"],
        "warnings": by_severity["warning"],
        "reviews": by_severity["review"],
    }
