"""Whether a running import batch has lost its process: the rule, without I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

# A batch's process writes a heartbeat with every staged chunk and when it applies. One on
# another machine that has said nothing for this long is taken for dead: long enough for the
# apply step of a very large roster (the apply transaction holds the batch row meanwhile, so a
# clean-up cannot overtake it on PostgreSQL), short enough that a night's sync is not blocked.
STALE_AFTER = dt.timedelta(minutes=15)


def worker_name(host: str, pid: int, nonce: str) -> str:
    """The `import_batches.worker_id` of a process: "host:pid:nonce" (at most 64 characters)."""
    return f"{host[:40]}:{pid}:{nonce[:12]}"


def is_abandoned(
    worker_id: str | None,
    last_sign_of_life: dt.datetime,
    now: dt.datetime,
    *,
    host: str,
    alive: Callable[[int], bool],
    stale_after: dt.timedelta = STALE_AFTER,
) -> bool:
    """A running batch is abandoned when its process is gone: on this host, its pid is not
    alive; on any host, its last heartbeat (or its start) is older than `stale_after`.

    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> is_abandoned("h:42:ab", t, t, host="h", alive=lambda pid: False)
    True
    >>> is_abandoned("other:42:ab", t, t, host="h", alive=lambda pid: False)
    False
    >>> is_abandoned("other:42:ab", t, t + STALE_AFTER * 2, host="h", alive=lambda pid: True)
    True
    """
    parts = (worker_id or "").rsplit(":", 2)
    if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1])):
        return True
    if last_sign_of_life.tzinfo is None:  # SQLite hands back naive UTC
        last_sign_of_life = last_sign_of_life.replace(tzinfo=dt.UTC)
    return now - last_sign_of_life > stale_after
