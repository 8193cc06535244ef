"""The one clock: frozen time stays put, moves only when told, and is restored afterwards."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from openslots.domain import clock

T0 = dt.datetime(2026, 12, 1, 21, 59, tzinfo=dt.UTC)


def test_system_clock_is_aware_utc_and_real() -> None:
    before = dt.datetime.now(dt.UTC)
    seen = clock.now()
    after = dt.datetime.now(dt.UTC)
    assert seen.tzinfo is not None and seen.utcoffset() == dt.timedelta(0)
    assert before <= seen <= after


def test_frozen_clock_stands_still_moves_on_advance_and_is_restored() -> None:
    with clock.frozen_clock(T0) as frozen:
        assert clock.now() == T0
        assert clock.now() == T0  # still: nothing moved it
        assert frozen.advance(dt.timedelta(days=21)) == dt.datetime(
            2026, 12, 22, 21, 59, tzinfo=dt.UTC
        )
        assert clock.now() == dt.datetime(2026, 12, 22, 21, 59, tzinfo=dt.UTC)
        frozen.set(dt.datetime(2027, 1, 1, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
        assert clock.now() == dt.datetime(2027, 1, 1, 8, 0, tzinfo=dt.UTC)
    assert isinstance(clock.current(), clock.SystemClock)
    assert abs(clock.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


def test_frozen_clock_is_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), clock.frozen_clock(T0):
        raise RuntimeError("boom")
    assert isinstance(clock.current(), clock.SystemClock)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        clock.FrozenClock(dt.datetime(2026, 12, 1, 9, 0))


def test_other_threads_see_the_frozen_time() -> None:
    seen: list[dt.datetime] = []
    with clock.frozen_clock(T0):
        worker = threading.Thread(target=lambda: seen.append(clock.now()))
        worker.start()
        worker.join()
    assert seen == [T0]
