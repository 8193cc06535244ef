"""Wall-clock timers wrapped around functions of the code under measurement (benchmarks only)."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any


class Timers:
    """Wrap module attributes with wall-clock accumulators; undo on exit."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.labels: list[str] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:  # renamed or gone in this version of the code: not timed
            return

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))
        self.labels.append(label)

    def wrap_generator(self, owner: Any, name: str, label: str) -> None:
        """Time only the generator's own work (each `next`), not its consumer's."""
        original = getattr(owner, name, None)
        if original is None:
            return

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = iter(original(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.seconds[label] += time.perf_counter() - start
                    self.calls[label] += 1
                yield item

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))
        self.labels.append(label)

    def restore(self) -> None:
        while self._undo:
            owner, name, original = self._undo.pop()
            setattr(owner, name, original)

    def report(self) -> dict[str, dict[str, float | int]]:
        """Seconds and calls per label, in wrapping order."""
        return {
            "inner_s": {k: round(self.seconds[k], 3) for k in self.labels if k in self.seconds},
            "inner_calls": {k: self.calls[k] for k in self.labels if k in self.calls},
        }
