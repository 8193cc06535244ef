"""The seed's resend cadence: hand-written days, then properties over any run schedule."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.cadence import (
    DEFAULT_CADENCE,
    CadenceDecision,
    CadenceError,
    next_step,
    parse_cadence,
    step_of_resend,
)
from openslots.domain.statuses import InvitationStatus

FIRST = dt.date(2026, 1, 1)


def day(n: int) -> dt.date:
    return FIRST + dt.timedelta(days=n)


@pytest.mark.parametrize(
    ("as_of", "done", "expected"),
    [
        (20, (), CadenceDecision(None)),  # the first step is 21 days after the first send
        (21, (), CadenceDecision(21)),
        (21, (21,), CadenceDecision(None)),  # a second run that day queues nothing
        (29, (21,), CadenceDecision(None)),
        (30, (21,), CadenceDecision(30)),
        (45, (), CadenceDecision(30, (21,))),  # a missed step is superseded, not sent late
        (125, (21, 30), CadenceDecision(120, (60, 90))),
        (120, (21, 30, 60, 90, 120), CadenceDecision(None)),
        (400, (21, 30, 60, 90, 120), CadenceDecision(None)),  # nothing after the last step
        (61, (30,), CadenceDecision(60)),  # a manual resend at day 30..59 counts as step 30
    ],
)
def test_the_step_due_on_a_day(
    as_of: int, done: tuple[int, ...], expected: CadenceDecision
) -> None:
    assert next_step(FIRST, day(as_of), DEFAULT_CADENCE, done) == expected


@pytest.mark.parametrize(
    "status",
    [
        InvitationStatus.QUEUED,
        InvitationStatus.REGISTERED,
        InvitationStatus.INVITED,
        InvitationStatus.OPTED_OUT,
        InvitationStatus.CONNECTED,
        InvitationStatus.NEW,
    ],
)
def test_only_sent_invitations_are_resent_automatically(status: InvitationStatus) -> None:
    assert next_step(FIRST, day(21), DEFAULT_CADENCE, (), status) == CadenceDecision(None)


def test_a_manual_resend_falls_in_a_step() -> None:
    assert step_of_resend(FIRST, day(20), DEFAULT_CADENCE) is None
    assert step_of_resend(FIRST, day(21), DEFAULT_CADENCE) == 21
    assert step_of_resend(FIRST, day(59), DEFAULT_CADENCE) == 30
    assert step_of_resend(FIRST, day(500), DEFAULT_CADENCE) == 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [("21,30,60,90,120", (21, 30, 60, 90, 120)), (" 7 ", (7,)), ("1, 2,3", (1, 2, 3))],
)
def test_parse_cadence(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cadence(text) == expected


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "whole numbers"),
        ("21;30", "whole numbers"),
        ("21,-30", "whole numbers"),
        ("21.5", "whole numbers"),
        ("0,21", "at least 1 day"),
        ("30,21", "later than"),
        ("21,21", "later than"),
    ],
)
def test_bad_cadences_are_refused_with_the_rule(text: str, rule: str) -> None:
    with pytest.raises(CadenceError, match=rule):
        parse_cadence(text)


cadences = st.lists(st.integers(1, 200), min_size=1, max_size=6, unique=True).map(
    lambda days: tuple(sorted(days))
)


@given(cadence=cadences, gaps=st.lists(st.integers(0, 40), min_size=1, max_size=30))
def test_any_run_schedule_sends_each_step_at_most_once_in_order(
    cadence: tuple[int, ...], gaps: list[int]
) -> None:
    """Runs on any days (twice a day, missed weeks): steps go out in increasing order, one per
    run at most, each only once it is due, every due step is either sent or superseded, and
    the last due step is always sent."""
    done: list[int] = []
    sent: list[int] = []
    today = 0
    for gap in gaps:
        today += gap
        decision = next_step(FIRST, day(today), cadence, done)
        if decision.step is not None:
            assert decision.step <= today
            assert all(s < decision.step for s in decision.superseded)
            done += [*decision.superseded, decision.step]
            sent.append(decision.step)
    assert sent == sorted(set(sent))
    assert done == sorted(done) and len(done) == len(set(done))
    reached = [step for step in cadence if step <= today]
    assert done == reached
    if reached:
        assert sent[-1] == reached[-1]
