"""The automatic resend cadence of the seed ("21/30/60/90/120 days"), as pure rules.

Days count from the day an invitation was first sent. Only an invitation still Sent is resent
automatically (Registered, Invited, Connected, New and Opted-Out never are); each step is
queued once; after a missed day only the latest due step goes out and the earlier ones are
skipped as `superseded`; nothing comes after the last step. A manual resend counts as the
step it falls in, so the cadence does not resend right after it.

Example:
    >>> import datetime as dt
    >>> d = next_step(dt.date(2026, 1, 1), dt.date(2026, 2, 5), DEFAULT_CADENCE, done=())
    >>> d.step, d.superseded
    (30, (21,))
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openslots.domain.statuses import InvitationStatus

DEFAULT_CADENCE: tuple[int, ...] = (21, 30, 60, 90, 120)
AUTO_RESEND_STATUSES = frozenset({InvitationStatus.SENT})


class CadenceError(ValueError):
    """A cadence that is not a list of increasing whole days; the message says which rule."""


def parse_cadence(text: str) -> tuple[int, ...]:
    """ "21,30,60,90,120" -> (21, 30, 60, 90, 120): whole days after the first send, each
    later than the one before.

    >>> parse_cadence(" 21, 30 ,60")
    (21, 30, 60)
    """
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part.isdigit() for part in parts):
        raise CadenceError("a cadence is whole numbers of days separated by commas, e.g. 21,30,60")
    days = tuple(int(part) for part in parts)
    if days[0] < 1:
        raise CadenceError("the first step must be at least 1 day after the first send")
    if any(later <= earlier for earlier, later in itertools.pairwise(days)):
        raise CadenceError("each step must come later than the one before it")
    return days


@dataclass(frozen=True)
class CadenceDecision:
    """What to queue now: `step` (days) or None, and the steps it passes over."""

    step: int | None
    superseded: tuple[int, ...] = ()


NOTHING = CadenceDecision(None)


def due_steps(first_sent: dt.date, as_of: dt.date, cadence: Sequence[int]) -> tuple[int, ...]:
    """Every step whose day has come on or before `as_of`."""
    return tuple(step for step in cadence if first_sent + dt.timedelta(days=step) <= as_of)


def next_step(
    first_sent: dt.date,
    as_of: dt.date,
    cadence: Sequence[int],
    done: Iterable[int],
    status: InvitationStatus = InvitationStatus.SENT,
) -> CadenceDecision:
    """The step to queue on `as_of`, given the steps already queued or skipped (`done`).

    Only steps later than every step done count: a step passed over once is never sent later.
    """
    if status not in AUTO_RESEND_STATUSES:
        return NOTHING
    reached = max(done, default=0)
    owed = [step for step in due_steps(first_sent, as_of, cadence) if step > reached]
    if not owed:
        return NOTHING
    return CadenceDecision(owed[-1], tuple(owed[:-1]))


def step_of_resend(first_sent: dt.date, resent_on: dt.date, cadence: Sequence[int]) -> int | None:
    """The step a manual resend on `resent_on` falls in (the latest step already come), or
    None before the first step.

    >>> step_of_resend(dt.date(2026, 1, 1), dt.date(2026, 1, 26), DEFAULT_CADENCE)
    21
    """
    reached = due_steps(first_sent, resent_on, cadence)
    return reached[-1] if reached else None
