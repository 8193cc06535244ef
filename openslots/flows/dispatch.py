"""The dispatch flow: turn owed intents into messages, then send each exactly once."""

from __future__ import annotations

from prefect import flow

from openslots.tasks.dispatch import dispatch_outbox, materialise_intents
from openslots.tasks.reconcile import publish_unreconciled_report


@flow(name="dispatch", persist_result=False)
def dispatch(limit: int | None = None) -> dict[str, object]:
    """Write the messages owed invitations need, then drain the outbox (email and SMS) through
    the configured senders; once a day, publish the count of claimed slots not yet reconciled
    into the EHR per provider (artifact `unreconciled-slots`). Returns counts only (no patient
    data).

    Example:
        ``dispatch()`` returns counts such as ``{"materialised": 3, "claimed": 3, "sent": 3,
        ...}``; from a shell: ``openslots outbox send --json``.
    """
    materialised = materialise_intents()
    counts = dispatch_outbox(limit)
    counts.materialised = materialised
    publish_unreconciled_report()
    return counts.as_dict()
