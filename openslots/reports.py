"""Read-side reports: what an import did, for the CLI, the demo and scripts."""

from __future__ import annotations

from typing import Any

from openslots.connectors.database import batches
from openslots.resources import resources


def batch_report(batch_id: int) -> dict[str, Any]:
    """Counts and findings of an import batch, as `roster import --json` prints them.

    Raises NoResultFound for an unknown batch.
    """
    with resources().engine.connect() as conn:
        return batches.batch_report(conn, batch_id)
