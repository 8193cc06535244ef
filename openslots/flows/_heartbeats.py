"""Flow run heartbeats that stop when the run ends, not on the next whole second.

Prefect 3's sync engine sends a run's heartbeats from a thread that sleeps in one-second
steps and joins it at the end of the run: every sync flow run then lasts until the next whole
second after it started (0.5 s on average, up to 1 s; DESIGN.md's "floor of about 1 s"). The
replacement below is Prefect's own loop (the same events from the same engine methods, at the
same frequency, the same join) waiting on its stop event instead, so the join returns at once.
It is installed only where Prefect's engine has the methods it calls; elsewhere Prefect's
own stays.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

THREAD_NAME = "openslots-flow-heartbeat"


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Generator[None, None, None]:
    """`prefect.flow_engine._send_heartbeats`, with a stop that does not wait for a sleep."""
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL

    seconds = engine.heartbeat_seconds
    if seconds is None:  # heartbeats turned off (PREFECT_FLOWS_HEARTBEAT_FREQUENCY)
        yield
        return
    seconds = max(seconds, MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            run = engine.flow_run
            if run and run.state and run.state.is_final():
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The caller's context: the thread must see the same Prefect settings (its API URL).
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name=THREAD_NAME, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)


def install() -> bool:
    """Put `send_heartbeats` in Prefect's flow engine; False (and Prefect's own left in place)
    when this Prefect's engine lacks what it calls."""
    from prefect import flow_engine

    engine = getattr(flow_engine, "BaseFlowRunEngine", None)
    needed = ("heartbeat_seconds", "_build_heartbeat_event_template", "_emit_flow_run_heartbeat")
    if (
        engine is None
        or not all(hasattr(engine, name) for name in needed)
        or not hasattr(flow_engine, "_send_heartbeats")
        or not hasattr(flow_engine, "MINIMUM_HEARTBEAT_INTERVAL")
    ):
        return False
    flow_engine._send_heartbeats = send_heartbeats
    return True
