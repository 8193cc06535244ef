"""The automatic resend cadence: a provider's own cadence, and a resend run without Prefect
(the `invitation-resend` flow runs the same tasks)."""

from __future__ import annotations

from typing import Any

from openslots.api._session import _writing
from openslots.connectors.database import providers
from openslots.connectors.database import resends as repo
from openslots.domain.cadence import CadenceError, parse_cadence
from openslots.errors import OpenslotsError
from openslots.resources import resources

DEFAULT_WORD = "default"


class InvalidCadence(OpenslotsError):
    """A cadence that breaks a rule; the message names the step and the rule."""


def set_resend_cadence(provider: str, cadence: str) -> dict[str, Any]:
    """Give a provider its own resend cadence ("21,30,60,90,120"), or `default` to follow
    OPENSLOTS_RESEND_CADENCE again. Returns the provider, the cadence now in force, its source
    and the previous own cadence (None when it had none)."""
    own: str | None = None
    if cadence.strip().lower() != DEFAULT_WORD:
        try:
            days = parse_cadence(cadence)
        except CadenceError as exc:
            raise InvalidCadence(f"cadence {exc}") from None
        own = ",".join(map(str, days))
    with _writing() as conn:
        provider_id = providers.provider_id_for(conn, provider)
        previous = repo.set_cadence(conn, provider_id, own)
    in_force = parse_cadence(own) if own else resources().settings.resolved_resend_cadence()
    return {
        "provider": provider,
        "cadence": list(in_force),
        "source": "provider" if own else "setting",
        "previous": None if previous is None else list(parse_cadence(previous)),
    }


def resend_due(
    as_of: str | None = None, provider: str | None = None, dry_run: bool = False
) -> dict[str, object]:
    """Queue every cadence step due on `as_of` (YYYY-MM-DD, default today), as the
    `invitation-resend` flow does, without a flow run: `{"as_of", "due", "queued", "skipped",
    "by_provider", "dry_run"}`."""
    from openslots.tasks.resend import queue_due_resends, start_resend_run

    return queue_due_resends.fn(start_resend_run.fn(as_of, provider, dry_run))
