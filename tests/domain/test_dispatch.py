"""The pure dispatch rules: backoff, quiet hours, the rate limit, template choice, cancelling."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.dispatch import (
    JITTER_RANGE,
    MAX_RETRY_DELAY,
    TokenBucket,
    cancel_reason,
    in_quiet_hours,
    message_kind,
    retries_exhausted,
    retry_delay,
)
from openslots.domain.messages import InvitationContext
from openslots.domain.rendering import MessageKind
from openslots.domain.statuses import InvitationStatus

TZ = "America/New_York"
minutes = st.times().map(lambda t: t.replace(second=0, microsecond=0))
jitters = st.floats(min_value=JITTER_RANGE[0], max_value=JITTER_RANGE[1])


@given(st.integers(min_value=1, max_value=60), jitters, st.floats(0.1, 600))
def test_backoff_doubles_within_the_jitter_and_never_passes_the_cap(
    attempts: int, jitter: float, base: float
) -> None:
    delay = retry_delay(attempts, base_seconds=base, jitter=jitter)
    assert dt.timedelta(0) < delay <= MAX_RETRY_DELAY
    uncapped = base * 2 ** (attempts - 1)
    if uncapped * JITTER_RANGE[1] < MAX_RETRY_DELAY.total_seconds():
        low, high = uncapped * JITTER_RANGE[0], uncapped * JITTER_RANGE[1]
        assert low - 1e-6 <= delay.total_seconds() <= high + 1e-6


@given(st.integers(min_value=1, max_value=60), jitters, st.floats(0, 3600))
def test_the_providers_retry_after_wins(attempts: int, jitter: float, after: float) -> None:
    delay = retry_delay(attempts, base_seconds=30, jitter=jitter, retry_after=after)
    assert delay == dt.timedelta(seconds=after)


def test_retries_exhausted_at_the_maximum() -> None:
    assert not retries_exhausted(7, 8)
    assert retries_exhausted(8, 8)


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ).map(lambda t: t.replace(second=0, microsecond=0)),
    minutes,
    minutes,
)
def test_quiet_hours_agree_with_minute_by_minute_membership(
    now: dt.datetime, start: dt.time, end: dt.time
) -> None:
    # The window as the set of minutes walked from its start to its end, around midnight.
    first, last = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    window = {(first + k) % 1440 for k in range((last - first) % 1440)}
    local = now.astimezone(ZoneInfo(TZ))
    assert in_quiet_hours(now, (start, end), TZ) is (local.hour * 60 + local.minute in window)
    assert in_quiet_hours(now, None, TZ) is False


@pytest.mark.parametrize(
    ("utc", "quiet"),
    [
        (dt.datetime(2030, 3, 6, 1, 59), False),  # 20:59 EST
        (dt.datetime(2030, 3, 6, 2, 0), True),  # 21:00
        (dt.datetime(2030, 3, 6, 12, 59), True),  # 07:59
        (dt.datetime(2030, 3, 6, 13, 0), False),  # 08:00
        (dt.datetime(2030, 7, 6, 12, 0), False),  # 08:00 EDT (summer time)
    ],
)
def test_quiet_hours_are_local(utc: dt.datetime, quiet: bool) -> None:
    window = (dt.time(21), dt.time(8))
    assert in_quiet_hours(utc.replace(tzinfo=dt.UTC), window, TZ) is quiet


@given(
    st.floats(min_value=0.5, max_value=100),
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=60),
)
def test_the_bucket_never_lets_more_through_than_capacity_plus_rate_times_time(
    rate: float, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, capacity=max(1.0, rate))
    now, sends = 0.0, []
    for gap in gaps:
        now += gap
        sends.append(now + bucket.reserve(now))
    sends.sort()
    for i, first in enumerate(sends):
        for j in range(i, len(sends)):
            window = sends[j] - first
            assert j - i + 1 <= bucket.capacity + rate * window + 1e-6


def test_template_choice() -> None:
    plain = InvitationContext("A", "B", "Dr. C", "Main")
    dependent = InvitationContext("A", "B", "Dr. C", "Main", "G", "H")
    assert message_kind(plain, resend=False) is MessageKind.INVITATION
    assert message_kind(dependent, resend=False) is MessageKind.DEPENDENT_INVITATION
    assert message_kind(dependent, resend=True) is MessageKind.RESEND


@pytest.mark.parametrize(
    ("status", "opted_out", "reason"),
    [
        (InvitationStatus.QUEUED, False, None),
        (InvitationStatus.SENT, False, None),
        (InvitationStatus.REGISTERED, False, None),
        (InvitationStatus.INVITED, False, None),
        (InvitationStatus.SENT, True, "recipient opted out"),
        (InvitationStatus.OPTED_OUT, False, "recipient opted out"),
        (InvitationStatus.CONNECTED, False, "invitation is Connected"),
        (InvitationStatus.NEW, False, "invitation is New"),
    ],
)
def test_cancel_reason(status: InvitationStatus, opted_out: bool, reason: str | None) -> None:
    assert cancel_reason(status, opted_out=opted_out) == reason
