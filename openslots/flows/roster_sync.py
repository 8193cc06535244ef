"""The roster sync flow: a roster CSV in, clients upserted, MRNs mapped, invitations queued."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from openslots.flows._runs import provider_tag, run_name
from openslots.tasks.publish import publish_roster_report, roster_progress
from openslots.tasks.roster import apply_roster, stage_roster, start_import


def _describe(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    # Provider and location are the practice's names, not patient data; the path is left out.
    provider, location = str(params["provider"]), str(params["location"])
    return [f"{provider} / {location}", str(params.get("mode", "invite"))], [
        provider_tag(provider),
        "source:csv",
    ]


@flow(
    name="roster-sync",
    flow_run_name=run_name("roster-sync", _describe),
    log_prints=False,
    persist_result=False,
)
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

    The run is named "roster-sync · PROVIDER / LOCATION · MODE · DAY" and publishes the
    artifacts `roster-import-report-PROVIDER-LOCATION` (markdown) and
    `roster-import-counts-PROVIDER-LOCATION` (table), and a progress bar while it stages.

    Example:
        From Python: ``roster_sync("roster.csv", "Dr. Rivera", "Main St", mode="invite")``;
        from a shell: ``openslots roster import roster.csv --provider "Dr. Rivera"
        --location "Main St"``.
    """
    start = start_import(path, provider, location, mode, strict, integrated)
    with roster_progress(provider, location) as progress:
        staged = stage_roster(start.batch_id, path)
        summary = apply_roster(start.batch_id, staged)
        progress(100.0)
    counts = summary.as_dict()
    publish_roster_report(counts, staged.rejected, provider, location)
    return counts
