"""The dispatch flow: turn owed intents into messages, then send each exactly once."""

from __future__ import annotations

from prefect import flow

from openslots.tasks.dispatch import dispatch_outbox, materialise_intents


@flow(name="dispatch", persist_result=False)
def dispatch(limit: int | None = None) -> dict[str, object]:
    """Write the messages owed invitations need, then drain the outbox (email and SMS) through
    the configured senders. Returns counts only (no patient data).

    Example:
        ``dispatch()`` returns counts such as ``{"materialised": 3, "claimed": 3, "sent": 3,
        ...}``; from a shell: ``openslots outbox send --json``.
    """
    materialised = materialise_intents()
    counts = dispatch_outbox(limit)
    counts.materialised = materialised
    return counts.as_dict()
