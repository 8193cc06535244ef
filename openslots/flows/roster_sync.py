"""The roster sync flow: a roster CSV in, clients upserted, MRNs mapped, invitations queued."""

from __future__ import annotations

from typing import Literal

from prefect import flow

from openslots.tasks.roster import apply_roster, publish_import_report, stage_roster, start_import


@flow(name="roster-sync", log_prints=False, persist_result=False)
def roster_sync(
    path: str,
    provider: str,
    location: str,
    mode: Literal["invite", "sync"] = "invite",
    strict: bool = False,
    integrated: bool = False,
) -> dict[str, object]:
    """Import one roster file for a provider and location.

    Args:
        path: the CSV file (the seed's template columns; see `openslots roster template`).
        provider: provider name; created on first use.
        location: location name; created on first use.
        mode: "sync" (nightly EHR roster: rows of Approved clients refresh them) or "invite"
            (the seed's bulk upload: such rows are rejected).
        strict: any rejected row fails the file and nothing is written.
        integrated: mark the provider EHR-integrated (alerts then need an MRN).

    Returns:
        Counts only: batch_id, total_rows, accepted, rejected, queued_invitations, ...

    Example:
        From Python: ``roster_sync("roster.csv", "Dr. Rivera", "Main St", mode="invite")``;
        from a shell: ``openslots roster import roster.csv --provider "Dr. Rivera"
        --location "Main St"``.
    """
    start = start_import(path, provider, location, mode, strict, integrated)
    staged = stage_roster(start.batch_id, path)
    summary = apply_roster(start.batch_id, staged)
    publish_import_report(summary)
    return summary.as_dict()
