"""The dispatch flow: turn owed intents into messages, then send each exactly once."""

from __future__ import annotations

from typing import Any

from prefect import flow

from openslots import reports
from openslots.flows._runs import run_name
from openslots.tasks.dispatch import dispatch_outbox, materialise_intents
from openslots.tasks.publish import publish_report
from openslots.tasks.reconcile import publish_unreconciled_report


def _describe(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    limit = params.get("limit")
    return ([f"limit {limit}"] if limit is not None else []), ["source:outbox"]


@flow(
    name="dispatch",
    flow_run_name=run_name("dispatch", _describe, minutes=True),
    persist_result=False,
)
def dispatch(limit: int | None = None) -> dict[str, object]:
    """Write the messages owed invitations need, then drain the outbox (email and SMS) through
    the configured senders; once a day, publish the count of claimed slots not yet reconciled
    into the EHR per provider (artifact `unreconciled-slots`). Returns counts only (no patient
    data). A run that did anything publishes `dispatch-report` (markdown) and `dispatch-counts`
    (table); an idle run (most of the minutes) publishes nothing.

    Example:
        ``dispatch()`` returns counts such as ``{"materialised": 3, "claimed": 3, "sent": 3,
        ...}``; from a shell: ``openslots outbox send --json``.
    """
    materialised = materialise_intents()
    counts = dispatch_outbox(limit)
    counts.materialised = materialised
    publish_unreconciled_report()
    result = counts.as_dict()
    if any(result[name] for name in reports.DISPATCH_COUNTS):
        publish_report(reports.dispatch_report(result))
    return result
