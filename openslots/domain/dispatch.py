"""Rules of dispatch, pure: retry backoff, SMS quiet hours, the rate limit, what to send and
whether a claimed message may still go out.

The send task asks these and writes what they answer; time comes in as a parameter (the one
clock for wall time, a monotonic reading for the rate limit) so that tests move it.

Example:
    >>> import datetime as dt
    >>> retry_delay(3, base_seconds=30, jitter=1.0)
    datetime.timedelta(seconds=120)
    >>> in_quiet_hours(dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC),
    ...                (dt.time(21), dt.time(8)), "America/New_York")
    True
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from openslots.domain.cadence import AUTO_RESEND_STATUSES
from openslots.domain.messages import InvitationContext
from openslots.domain.rendering import MessageKind
from openslots.domain.statuses import RESEND_FORBIDDEN, InvitationStatus

# Jitter spreads retries of one burst (a relay that answered 421 to a whole batch) over time.
JITTER_RANGE = (0.75, 1.25)
# A delay past this would leave a message waiting longer than anyone wants: cap the doubling.
MAX_RETRY_DELAY = dt.timedelta(days=1)

# Statuses whose invitation messages may still go out (the seed: no resend to these).
SEND_FORBIDDEN = RESEND_FORBIDDEN


def retry_delay(
    attempts: int, *, base_seconds: float, jitter: float, retry_after: float | None = None
) -> dt.timedelta:
    """How long a refused message waits before its next attempt.

    `attempts` counts the sends tried so far (1 after the first refusal): base·2^(attempts−1)
    times `jitter` (drawn from JITTER_RANGE by the caller), capped at MAX_RETRY_DELAY. A
    provider that said when (HTTP Retry-After) is obeyed instead.
    """
    if retry_after is not None:
        return min(dt.timedelta(seconds=max(0.0, retry_after)), MAX_RETRY_DELAY)
    # Capped in seconds first: a large exponent would overflow timedelta itself.
    exponent = min(max(attempts, 1) - 1, 60)
    seconds = min(base_seconds * 2.0**exponent * jitter, MAX_RETRY_DELAY.total_seconds())
    return dt.timedelta(seconds=seconds)


def retries_exhausted(attempts: int, max_attempts: int) -> bool:
    """A refused message that has had `max_attempts` tries is dead, not failed."""
    return attempts >= max_attempts


def in_quiet_hours(now: dt.datetime, quiet: tuple[dt.time, dt.time] | None, timezone: str) -> bool:
    """True when `now` falls inside the quiet hours [start, end) in `timezone`.

    A window whose start is after its end spans midnight (21:00-08:00); start == end is an
    empty window; None means quiet hours are off.
    """
    if quiet is None:
        return False
    start, end = quiet
    local = now.astimezone(ZoneInfo(timezone)).time().replace(tzinfo=None)
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def message_kind(ctx: InvitationContext, *, resend: bool) -> MessageKind:
    """Which template an invitation message uses: a reminder for a later attempt (a resend),
    the dependent's invitation when a guardian receives it, else the plain invitation."""
    if resend:
        return MessageKind.RESEND
    return MessageKind.DEPENDENT_INVITATION if ctx.is_dependent else MessageKind.INVITATION


def cancel_reason(
    status: InvitationStatus, *, opted_out: bool, automatic: bool = False
) -> str | None:
    """Why a claimed invitation message must not go out any more (PHI-free), or None. An
    automatic resend (a cadence step) goes only to an invitation still Sent: one that became
    Registered or Invited since it was queued is not reminded by the cadence.

    >>> cancel_reason(InvitationStatus.REGISTERED, opted_out=False, automatic=True)
    'invitation is Registered: no automatic resend'
    """
    if opted_out or status is InvitationStatus.OPTED_OUT:
        return "recipient opted out"
    if status in SEND_FORBIDDEN:
        return f"invitation is {status}"
    if automatic and status not in AUTO_RESEND_STATUSES:
        return f"invitation is {status}: no automatic resend"
    return None


@dataclass
class TokenBucket:
    """A rate limit shared by the sending threads of one worker: `rate` sends per second on
    average, at most `capacity` at once. `reserve(now)` takes one token and says how long the
    caller must wait before using it (a reservation: waiting threads queue in order).

    >>> bucket = TokenBucket(rate=2.0, capacity=1.0)
    >>> [bucket.reserve(0.0) for _ in range(3)]
    [0.0, 0.5, 1.0]
    """

    rate: float
    capacity: float = 1.0
    _tokens: float | None = None
    _at: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        """Seconds to wait before sending (0 when a token is there); `now` is monotonic."""
        with self._lock:
            if self._tokens is None or self._at is None:
                self._tokens, self._at = self.capacity, now
            elapsed = max(0.0, now - self._at)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._at = max(self._at, now)
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
