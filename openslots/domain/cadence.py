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
from enum import StrEnum
from zoneinfo import ZoneInfo

from openslots.domain.statuses import InvitationStatus

DEFAULT_CADENCE: tuple[int, ...] = (21, 30, 60, 90, 120)
AUTO_RESEND_STATUSES = frozenset({InvitationStatus.SENT})


class CadenceError(ValueError):
    """A cadence that is not a list of increasing whole days; the message says which rule."""


def parse_cadence(text: str) -> tuple[int, ...]:
    """ "21,30,60,90,120" -> (21, 30, 60, 90, 120): whole days after the first send, each
    later than the one before. The error names the part that is wrong (a cadence is no
    patient data).

    >>> parse_cadence(" 21, 30 ,60")
    (21, 30, 60)
    >>> try:
    ...     parse_cadence("21,x")
    ... except CadenceError as exc:
    ...     print(str(exc)[:13])
    step 2 ('x'):
    """
    shape = "a cadence is whole numbers of days separated by commas, e.g. 21,30,60"
    if not text.strip():
        raise CadenceError(f"empty: {shape}")
    parts = [part.strip() for part in text.split(",")]
    for number, part in enumerate(parts, 1):
        if not (part.isascii() and part.isdigit()):
            raise CadenceError(f"step {number} ({part[:20]!r}): {shape}")
    days = tuple(int(part) for part in parts)
    if days[0] < 1:
        raise CadenceError(
            f"step 1 ({days[0]}): the first step must be at least 1 day after the first send"
        )
    for number, (earlier, later) in enumerate(itertools.pairwise(days), 2):
        if later <= earlier:
            raise CadenceError(
                f"step {number} ({later}): each step must come later than the one before it "
                f"({earlier})"
            )
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


class SkipReason(StrEnum):
    """Why a cadence step is not queued (`invitation_resends.reason`, the run's `skipped`)."""

    SUPERSEDED = "superseded"  # a later step was due too: only the latest goes out
    SENT_IN_STEP = "sent_in_step"  # a message went out in this step already (a manual resend)
    # Not recorded: a message of the invitation still waits to be sent; the next run decides.
    MESSAGE_WAITING = "message_waiting"


@dataclass(frozen=True)
class StepPlan:
    """What one run does for one invitation: the step to queue (or None), the steps to record
    as skipped with their reason, and whether a step was due (`due`)."""

    step: int | None = None
    skipped: tuple[tuple[int, SkipReason], ...] = ()
    due: bool = False
    waiting: bool = False


def plan_resend(
    first_sent: dt.date,
    last_sent: dt.date | None,
    as_of: dt.date,
    cadence: Sequence[int],
    recorded: Iterable[int],
    *,
    status: InvitationStatus = InvitationStatus.SENT,
    message_waiting: bool = False,
) -> StepPlan:
    """The run's plan for one invitation on `as_of`, given the steps already `recorded`
    (queued or skipped) and the day it was last sent.

    A send after the first (a manual resend, or a step that went out late) counts as the step
    it falls in, recorded `sent_in_step`, so the cadence does not resend right after it. While
    a message of the invitation waits to be sent nothing is decided (the next run does), so a
    client never gets two at once.

    >>> d = lambda n: dt.date(2026, 1, 1) + dt.timedelta(days=n)
    >>> plan = plan_resend(d(0), d(25), d(30), DEFAULT_CADENCE, [])
    >>> plan.step, plan.skipped
    (30, ((21, <SkipReason.SENT_IN_STEP: 'sent_in_step'>),))
    """
    if status not in AUTO_RESEND_STATUSES:
        return StepPlan()
    done = set(recorded)
    skipped: list[tuple[int, SkipReason]] = []
    covered = step_of_resend(first_sent, min(last_sent or first_sent, as_of), cadence)
    if covered is not None and covered > max(done, default=0):
        skipped.append((covered, SkipReason.SENT_IN_STEP))
        done.add(covered)
    decision = next_step(first_sent, as_of, cadence, done, status)
    if decision.step is None:
        return StepPlan(None, () if message_waiting else tuple(skipped))
    if message_waiting:
        return StepPlan(None, (), due=True, waiting=True)
    skipped += [(step, SkipReason.SUPERSEDED) for step in decision.superseded]
    return StepPlan(decision.step, tuple(sorted(skipped)), due=True)


def sent_on(at: dt.datetime, timezone: str) -> dt.date:
    """The calendar day of an instant at a location (the cadence counts the practice's days).

    >>> sent_on(dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.UTC), "America/New_York")
    datetime.date(2026, 1, 1)
    """
    if at.tzinfo is None:  # SQLite gives back naive UTC
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(ZoneInfo(timezone)).date()


def step_of_resend(first_sent: dt.date, resent_on: dt.date, cadence: Sequence[int]) -> int | None:
    """The step a manual resend on `resent_on` falls in (the latest step already come), or
    None before the first step.

    >>> step_of_resend(dt.date(2026, 1, 1), dt.date(2026, 1, 26), DEFAULT_CADENCE)
    21
    """
    reached = due_steps(first_sent, resent_on, cadence)
    return reached[-1] if reached else None
