"""The dispatch flow: send what the outbox holds, each message exactly once."""

from __future__ import annotations

from prefect import flow

from openslots.tasks.dispatch import dispatch_outbox


@flow(name="dispatch", persist_result=False)
def dispatch(limit: int | None = None) -> dict[str, object]:
    """Drain the outbox (email and SMS) through the configured senders.

    Example:
        ``dispatch()`` returns counts such as ``{"claimed": 3, "sent": 3, "failed": 0, ...}``;
        from a shell: ``openslots outbox send --json``.
    """
    return dispatch_outbox(limit).as_dict()
