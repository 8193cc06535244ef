"""A small in-process rate limiter: at most `limit` hits per key in any `window` seconds.

One process serves the patient pages (`openslots web`); behind several, each keeps its own
counts, which only makes the limits looser per process, never stricter. The clock is injected
so that tests move time instead of sleeping.

Example:
    >>> now = [0.0]
    >>> limiter = RateLimiter(limit=2, window=60, clock=lambda: now[0])
    >>> [limiter.hit("a") for _ in range(3)]
    [True, True, False]
    >>> now[0] = 60.0
    >>> limiter.hit("a")
    True
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

_PRUNE_ABOVE = 10_000  # keys kept before the idle ones are dropped


class RateLimiter:
    """A sliding window per key; thread-safe (sync endpoints run in a thread pool)."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def retry_after(self, key: str) -> int:
        """Whole seconds until `key` may hit again (0: now)."""
        with self._lock:
            now = self._clock()
            hits = self._recent(key, now)
            if len(hits) < self.limit:
                return 0
            return max(1, int(hits[0] + self.window - now + 0.999))

    def hit(self, key: str) -> bool:
        """Count one hit for `key` when it is under the limit; False (nothing counted) when not."""
        return hit_all([(self, key)])

    def _prune(self, now: float) -> None:
        if len(self._hits) > _PRUNE_ABOVE:
            for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window]:
                del self._hits[key]


def hit_all(checks: Sequence[tuple[RateLimiter, str]]) -> bool:
    """Count a hit on every (limiter, key) only when each is under its limit, so that a
    refused request uses up no one's allowance."""
    limiters = sorted({id(limiter): limiter for limiter, _ in checks}.values(), key=id)
    for limiter in limiters:
        limiter._lock.acquire()
    try:
        stamped = [(limiter, key, limiter._clock()) for limiter, key in checks]
        if any(len(lim._recent(key, now)) >= lim.limit for lim, key, now in stamped):
            return False
        for limiter, key, now in stamped:
            limiter._recent(key, now).append(now)
            limiter._prune(now)
        return True
    finally:
        for limiter in limiters:
            limiter._lock.release()
