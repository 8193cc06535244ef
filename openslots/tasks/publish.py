"""Publish a run's report to the Prefect UI: a markdown artifact and a table artifact under
stable keys (openslots/reports.py builds them from counts and names), and a progress artifact
for the long steps. A report that cannot be stored is a warning: the run's work committed."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator
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
from openslots.tasks._timings import finished_task_runs


def _durations() -> list[tuple[str, float]]:
    """Each finished task of this flow run and the run so far, in seconds (read from the task
    runs this process ran: tasks/_timings.py)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    durations = finished_task_runs(context.flow_run.id)
    started = context.flow_run.start_time
    if started is not None:  # wall time, as Prefect's own start time (not the project clock)
        elapsed = dt.datetime.now(dt.UTC) - started
        durations.append(("run so far", elapsed.total_seconds()))
    return durations


def publish(report: reports.RunReport) -> None:
    """Store `report` as its two artifacts (markdown, then table) with its durations, after
    the progress bars' last moves."""
    flush_ui()
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


class _Sender:
    """UI-only API calls (a progress bar's) made in order by one daemon thread, each in the
    context it was queued from (its flow and task run), so that a run's work does not wait on
    them; `flush()` waits until those queued so far are made."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[contextvars.Context, Callable[[], None]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="openslots-ui-sender", daemon=True
                )
                self._thread.start()
        self._queue.put((contextvars.copy_context(), call))

    def _work(self) -> None:
        while True:
            context, call = self._queue.get()
            try:
                context.run(call)
            except Exception as exc:  # a progress bar is a nicety: the run goes on
                logging.getLogger("openslots").debug("UI call failed (%s)", type(exc).__name__)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()


_sender = _Sender()
flush_ui = _sender.flush


class Progress:
    """A Prefect progress artifact moved at most every `step` percent (a handful of updates
    per run, not one per row or chunk). Created and moved in the background (`_Sender`):
    `flush_ui()` (done by `publish` and `roster_progress`) waits for it."""

    def __init__(self, description: str, step: float = 20.0):
        self.step, self.shown = step, 0.0
        self.id: Any = None
        _sender.submit(lambda: self._create(description))

    def _create(self, description: str) -> None:
        try:
            self.id = create_progress_artifact(progress=0.0, description=description)
        except Exception as exc:
            run_logger().debug("progress artifact not created (%s)", type(exc).__name__)

    def __call__(self, percent: float) -> None:
        percent = max(0.0, min(100.0, percent))
        if percent - self.shown < self.step and percent < 100.0:
            return
        if percent <= self.shown:
            return
        self.shown = percent
        _sender.submit(lambda: self._update(percent))

    def _update(self, percent: float) -> None:
        if self.id is None:
            return
        try:
            update_progress_artifact(artifact_id=self.id, progress=percent)
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
        flush_ui()
