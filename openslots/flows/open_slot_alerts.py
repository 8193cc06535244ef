"""The open-slot alerts flow: offer a slot that just opened (or every slot with offers due)
without waiting for the next dispatch; the `open-slot-alerts` deployment runs it on each
`openslots.slot.opened` event (openslots/events.py, README "Events")."""

from __future__ import annotations

from typing import Any

from prefect import flow

from openslots import reports
from openslots.flows._runs import run_name
from openslots.tasks.open_slots import offer_slots
from openslots.tasks.publish import publish_report


def _describe(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    slot_id = params.get("slot_id")
    return [f"slot {slot_id}" if slot_id is not None else "every due slot"], ["source:slots"]


@flow(
    name="open-slot-alerts",
    flow_run_name=run_name("open-slot-alerts", _describe, minutes=True),
    persist_result=False,
)
def open_slot_alerts(slot_id: int | None = None) -> dict[str, object]:
    """Queue the offers due for `slot_id` (default: every slot) in the outbox; dispatch sends
    them. Idempotent: an offer already queued (by `slots open`, the API or the HL7 ingest that
    opened the slot) keeps its unique outbox key, so this run adds nothing for it.

    Returns:
        Counts only: ``{"offers_sent", "messages", "waiting", "skipped", "slots_closed"}``.
        Publishes `open-slot-alerts-report` (markdown) and `open-slot-alerts-counts` (table).

    Example:
        ``open_slot_alerts(slot_id=42)``; from a shell: ``prefect deployment run
        open-slot-alerts/open-slot-alerts --param slot_id=42``.
    """
    counts = offer_slots(slot_id)
    publish_report(reports.alerts_report(slot_id, counts))
    return counts
