"""The one clock: every "now" in openslots comes from here, so tests can freeze and move time.

Cadences, offer timeouts, leases and quiet hours all depend on the time; a rule that calls
`datetime.now()` itself cannot be tested at 21:59 or 21 days later. Production code calls
`now()`; a test installs a `FrozenClock` with `frozen_clock(...)` and moves it with `advance()`.

Example:
    >>> import datetime as dt
    >>> with frozen_clock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)) as clock:
    ...     _ = clock.advance(dt.timedelta(days=21))
    ...     now().date().isoformat()
    '2026-12-22'
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    """Where the time comes from: always an aware datetime in UTC."""

    def now(self) -> dt.datetime: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FrozenClock:
    """A clock that stands still until a test moves it; safe to read from several threads."""

    def __init__(self, at: dt.datetime):
        self._at = _aware(at)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._at

    def set(self, at: dt.datetime) -> None:
        with self._lock:
            self._at = _aware(at)

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        with self._lock:
            self._at += delta
            return self._at


def is_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (America/Chicago, UTC).

    >>> is_time_zone("America/Chicago"), is_time_zone("Mars/Olympus")
    (True, False)
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("a clock's time must carry a time zone (use datetime.UTC)")
    return at.astimezone(dt.UTC)


_current: Clock = SystemClock()


def current() -> Clock:
    """The installed clock (the system clock unless a test installed another)."""
    return _current


def now() -> dt.datetime:
    """The current time, aware, in UTC."""
    return _current.now()


def today() -> dt.date:
    """The current date where this process runs (the machine's time zone), from the clock."""
    return _current.now().astimezone().date()


def install(clock: Clock) -> Clock:
    """Make `clock` the process's clock; returns the one it replaces."""
    global _current
    previous, _current = _current, clock
    return previous


@contextmanager
def frozen_clock(at: dt.datetime) -> Iterator[FrozenClock]:
    """Freeze the process's time at `at` for the duration of the block."""
    clock = FrozenClock(at)
    previous = install(clock)
    try:
        yield clock
    finally:
        install(previous)
