"""The task runs of each flow run in this process, as Prefect's engine keeps them up to date
(state, start time, run time), so a run's report lists its steps' durations without reading
them back from the API (a round trip per report, and a race: task run states reach the
server as events, later)."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any

KEEP_RUNS = 64  # flow runs remembered (a served process runs flows for days)

_lock = threading.Lock()
_runs: OrderedDict[Any, dict[Any, Any]] = OrderedDict()


def note_task_run() -> None:
    """Remember the running task run (inside a task of a flow run; nothing otherwise)."""
    if "prefect.context" not in sys.modules:  # no run in this process; do not import Prefect
        return
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    run = context.task_run if context is not None else None
    if run is None or run.flow_run_id is None:
        return
    with _lock:
        _runs.setdefault(run.flow_run_id, {})[run.id] = run
        _runs.move_to_end(run.flow_run_id)
        while len(_runs) > KEEP_RUNS:
            _runs.popitem(last=False)


def finished_task_runs(flow_run_id: Any) -> list[tuple[str, float]]:
    """(name, seconds running) of each finished task run of `flow_run_id` noted here, in the
    order they started."""
    with _lock:
        runs = list(_runs.get(flow_run_id, {}).values())
    found = sorted(
        (r.start_time, r.name, r.total_run_time.total_seconds())
        for r in runs
        if r.start_time is not None and r.state is not None and r.state.is_final()
    )
    return [(name, seconds) for _start, name, seconds in found]
