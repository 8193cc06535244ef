"""Publish a run's report to the Prefect UI: a markdown artifact and a table artifact under
stable keys (openslots/reports.py builds them from counts and names), and a progress artifact
for the long steps. A report that cannot be stored is a warning: the run's work committed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from openslots import reports
from openslots.connectors.database import batches
from openslots.resources import resources
from openslots.tasks._safety import phi_safe, run_logger


def _durations() -> list[tuple[str, float]]:
    """Each finished task of this flow run and the run so far, in seconds (one API call)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    if not isinstance(context.client, SyncPrefectClient):  # an async caller: not ours
        return []
    runs = context.client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[context.flow_run.id]))
    )
    found = sorted(
        (r.start_time, r.name, r.total_run_time.total_seconds())
        for r in runs
        if r.start_time is not None and r.state is not None and r.state.is_final()
    )
    durations = [(name, seconds) for _start, name, seconds in found]
    started = context.flow_run.start_time
    if started is not None:  # wall time, as Prefect's own start time (not the project clock)
        elapsed = dt.datetime.now(dt.UTC) - started
        durations.append(("run so far", elapsed.total_seconds()))
    return durations


def publish(report: reports.RunReport) -> None:
    """Store `report` as its two artifacts (markdown, then table) with its durations."""
    try:
        try:
            report.durations = _durations()
        except Exception as exc:  # durations are a nicety; the counts are the report
            run_logger().debug("durations not read (%s)", type(exc).__name__)
        create_markdown_artifact(
            key=report.key, markdown=report.markdown(), description=report.description
        )
        create_table_artifact(
            key=report.table_key, table=report.table, description=report.description
        )
    except Exception as exc:
        run_logger().warning(
            "%s: the report artifact was not stored (%s)", report.key, type(exc).__name__
        )


@task(name="publish-report", cache_policy=NO_CACHE)
@phi_safe("publish-report")
def publish_report(report: reports.RunReport) -> None:
    """Publish a report built from a flow's counts (no database read)."""
    publish(report)


@task(name="publish-roster-report", cache_policy=NO_CACHE)
@phi_safe("publish-roster-report")
def publish_roster_report(
    summary: dict[str, Any], stage_rejected: int, provider: str, location: str
) -> None:
    """The roster import's report, keyed by provider and location, with findings by rule."""
    with resources().engine.connect() as conn:
        by_rule = batches.findings_by_rule(conn, int(summary["batch_id"]))
    publish(reports.roster_report(summary, stage_rejected, provider, location, by_rule))


@task(name="publish-registrations-report", cache_policy=NO_CACHE)
@phi_safe("publish-registrations-report")
def publish_registrations_report(counts: dict[str, Any]) -> None:
    """The registrations import's report with its findings by rule."""
    by_rule: dict[tuple[str, str, str], int] = {}
    if counts.get("batch_id"):
        with resources().engine.connect() as conn:
            by_rule = batches.findings_by_rule(conn, int(counts["batch_id"]))
    publish(reports.registrations_report(counts, by_rule))


class Progress:
    """A Prefect progress artifact moved at most every `step` percent (a handful of updates
    per run, not one per row or chunk)."""

    def __init__(self, description: str, step: float = 20.0):
        self.step, self.shown = step, 0.0
        self.id: Any = None
        try:
            self.id = create_progress_artifact(progress=0.0, description=description)
        except Exception as exc:
            run_logger().debug("progress artifact not created (%s)", type(exc).__name__)

    def __call__(self, percent: float) -> None:
        percent = max(0.0, min(100.0, percent))
        if self.id is None or (percent - self.shown < self.step and percent < 100.0):
            return
        if percent <= self.shown:
            return
        try:
            update_progress_artifact(artifact_id=self.id, progress=percent)
            self.shown = percent
        except Exception as exc:
            run_logger().debug("progress not updated (%s)", type(exc).__name__)


@contextmanager
def roster_progress(provider: str, location: str) -> Iterator[Progress]:
    """Progress of a roster import: the file's validation and staging fill 0-90 %, the apply
    step (one transaction) the rest. Fed by the stage step's listeners (tasks/roster.py)."""
    from openslots.tasks import roster

    bar = Progress(f"roster import of {provider} / {location}")

    def listener(_rows: int, fraction: float) -> None:
        bar(fraction * 90.0)

    roster.progress_listeners.append(listener)
    try:
        yield bar
    finally:
        roster.progress_listeners.remove(listener)
