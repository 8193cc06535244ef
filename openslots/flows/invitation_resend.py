"""The invitation resend flow: queue the cadence steps that came due (dispatch sends them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow

from openslots import reports
from openslots.flows._runs import day, provider_tag, run_name
from openslots.tasks.publish import publish_report
from openslots.tasks.resend import queue_due_resends, start_resend_run


def _describe(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    provider = params.get("provider")
    parts = [str(provider) if provider else "all providers"]
    parts += [f"as of {day(dt.date.fromisoformat(params['as_of']))}"] if params.get("as_of") else []
    parts += ["dry run"] if params.get("dry_run") else []
    return parts, [provider_tag(str(provider))] if provider else []


@flow(
    name="invitation-resend",
    flow_run_name=run_name("invitation-resend", _describe),
    persist_result=False,
)
def invitation_resend(
    as_of: str | None = None, provider: str | None = None, dry_run: bool = False
) -> dict[str, object]:
    """Queue, once per invitation and step, the resend of every invitation still Sent whose
    cadence step came due on or before `as_of`; the next dispatch sends them.

    Args:
        as_of: the day that decides which steps are due (YYYY-MM-DD); default today in
            OPENSLOTS_DEFAULT_TIMEZONE.
        provider: only this provider's invitations (default: every provider).
        dry_run: count what a real run would queue, write nothing.

    Returns:
        Counts only: ``{"as_of", "due", "queued", "skipped": {reason: n}, "by_provider",
        "dry_run"}``. Publishes `invitation-resend-report` (markdown) and
        `invitation-resend-counts` (table).

    Example:
        ``invitation_resend(as_of="2026-12-22")``; from a shell: ``openslots invitations
        resend-due --as-of 2026-12-22 --json``.
    """
    run = start_resend_run(as_of, provider, dry_run)
    result = queue_due_resends(run)
    publish_report(reports.resend_report(result))
    return result
