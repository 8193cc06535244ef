"""The daily reminder that a claimed appointment is not done until it is in the EHR's calendar:
a Prefect artifact with the count of unreconciled claimed slots per provider (no patient data),
published by the first dispatch run of each day (OPENSLOTS_DEFAULT_TIMEZONE's day)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import Artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from openslots.connectors.database import slot_reports
from openslots.domain import clock
from openslots.domain.reconcile import unreconciled_cutoff
from openslots.resources import resources
from openslots.tasks._safety import phi_safe

ARTIFACT_KEY = "unreconciled-slots"


def _description(day: str) -> str:
    return f"unreconciled claimed slots per provider, {day}"


@task(name="publish-unreconciled-report", cache_policy=NO_CACHE)
@phi_safe("publish-unreconciled-report")
def publish_unreconciled_report() -> int | None:
    """Publish today's artifact unless a run already did (the latest version's description
    names its day); one query. Returns the total unreconciled, None when already published."""
    res = resources()
    now = clock.now()
    day = now.astimezone(ZoneInfo(res.settings.default_timezone)).date().isoformat()
    # `_sync=True`: the sync variant (typed as a union with its coroutine twin).
    latest = Artifact.get(ARTIFACT_KEY, _sync=True)  # type: ignore[call-arg]
    if getattr(latest, "description", None) == _description(day):
        return None
    hours = res.settings.reconcile_after_hours
    with res.require_current_schema().connect() as conn:
        counts = slot_reports.unreconciled_per_provider(conn, unreconciled_cutoff(now, hours))
    lines = [
        f"# Claimed slots not reconciled into the EHR after {hours:g} h ({day})",
        "",
        "| provider | unreconciled |",
        "|---|---|",
        *[f"| {name} | {count} |" for name, count in counts.items()],
        "",
        "None." if not counts else "List them: `openslots slots list --unreconciled`.",
    ]
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown="\n".join(lines), description=_description(day)
    )
    return sum(counts.values())
