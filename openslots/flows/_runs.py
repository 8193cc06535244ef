"""Readable flow runs: a `flow_run_name` built from parameters that are not patient data (the
flow, a provider or feed, the day) and tags by provider and source, so the runs list in the
Prefect UI reads as a history. Paths are never part of a name (a file name can hold anything).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from openslots.domain import clock
from openslots.reports import slug
from openslots.settings import get_settings

log = logging.getLogger("openslots.flows")

SEPARATOR = " · "
# Who started a run without a deployment or a parent flow: a command (the CLI, the demo, a
# script); a deployment's runs (schedule, trigger, `prefect deployment run`) say so.
ORIGIN_COMMAND = "source:cli"
ORIGIN_DEPLOYMENT = "source:deployment"
ORIGIN_DROP = "source:drop"  # set by the drop flows around the runs they start

Describe = Callable[[dict[str, Any]], tuple[list[str], list[str]]]


def provider_tag(name: str) -> str:
    return f"provider:{slug(name)}"


def day(value: dt.date) -> str:
    """ "1 Dec 2026": a day in a run name. Not YYYY-MM-DD, which the log redaction
    (tasks/_safety.py) takes for a date of birth in Prefect's "Beginning flow run" line."""
    return f"{value.day} {value:%b %Y}"


def _when(minutes: bool) -> str:
    now = clock.now().astimezone(ZoneInfo(get_settings().default_timezone))
    return day(now.date()) + (f" {now:%H:%M}" if minutes else "")


def _tag_run(context: Any, tags: Iterable[str]) -> None:
    """Add `tags` to the running flow run (its creation took only the `prefect.tags` context)."""
    from prefect.client.orchestration import SyncPrefectClient

    run = context.flow_run
    merged = sorted({*(run.tags or []), *tags})
    if merged == sorted(run.tags or []) or not isinstance(context.client, SyncPrefectClient):
        return
    context.client.update_flow_run(run.id, tags=merged)
    run.tags = merged


def run_name(flow: str, describe: Describe | None = None, *, minutes: bool = False) -> Any:
    """A `flow_run_name` callable: "FLOW · PART · ... · DAY" from `describe(parameters)`,
    which also gives the run's tags. Never fails a run: a name it cannot build is the flow's."""

    def name() -> str:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        parts: list[str] = []
        try:
            params = dict(context.parameters or {}) if context else {}
            parts, tags = describe(params) if describe else ([], [])
            if context is not None and context.flow_run is not None:
                if context.flow_run.deployment_id is not None:
                    tags.append(ORIGIN_DEPLOYMENT)
                elif context.flow_run.parent_task_run_id is None:
                    tags.append(ORIGIN_COMMAND)
                _tag_run(context, tags)
            return SEPARATOR.join([flow, *parts, _when(minutes)])
        except Exception as exc:  # a label is a convenience: the run goes on without it
            log.debug("run name/tags not set (%s)", type(exc).__name__)
            return SEPARATOR.join([flow, *parts]) if parts else flow

    name.__name__ = f"{flow.replace('-', '_')}_run_name"
    return name
