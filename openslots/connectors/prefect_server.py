"""Prefect's temporary API server, started so that it outlives Ctrl-C and dies with us; and
our own errors logged by Prefect without a traceback.

Prefect 3 starts the temporary server (no `PREFECT_API_URL`) as a plain child process:
Ctrl-C in a terminal signals the whole process group, so the server died before the command
could record its end in it (70-145 s of `Error logging to API`), and a SIGKILLed command left
it running as an orphan. Prefect offers no setting for either, so `install` wraps the child's
start: its own session (a terminal's Ctrl-C no longer reaches it; the command stops it at
exit, as Prefect already does) and a watch on its parent that stops it once the parent is gone.
Run as `python -m openslots.connectors.prefect_server PARENT_PID UVICORN_ARGS...`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from typing import Any

_UVICORN = ["-m", "uvicorn"]
POLL_SECONDS = 0.5
GRACE_SECONDS = 10.0


def install() -> None:
    """Make Prefect start its temporary server through `child_command` (idempotent; nothing
    to do when `PREFECT_API_URL` names a server, e.g. `openslots serve` or a worker's)."""
    from prefect.settings import PREFECT_API_URL

    quiet_project_tracebacks()
    if PREFECT_API_URL.value():
        return
    from prefect.server.api import server as server_module

    cls = server_module.SubprocessASGIServer
    if getattr(cls, "_openslots_wrapped", False):
        return
    original = cls._run_uvicorn_command

    def run_uvicorn_command(self: Any) -> subprocess.Popen[Any]:
        shim = types.SimpleNamespace(**vars(subprocess))
        shim.Popen = _popen_with_watch
        real, server_module.subprocess = server_module.subprocess, shim  # type: ignore[assignment]
        try:
            return original(self)
        finally:
            server_module.subprocess = real

    cls._run_uvicorn_command = run_uvicorn_command  # type: ignore[method-assign]
    cls._openslots_wrapped = True  # type: ignore[attr-defined]


class NoProjectTracebacks(logging.Filter):
    """Our own errors (OpenslotsError: a bad file, an unknown provider) say everything in
    their message: Prefect logs them without the traceback, on the console and to the API.
    Set OPENSLOTS_DEBUG_UNSAFE_ERRORS to keep them when debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        from openslots.errors import OpenslotsError

        if record.exc_info and isinstance(record.exc_info[1], OpenslotsError):
            from openslots.resources import resources

            if not resources().settings.debug_unsafe_errors:
                record.exc_info = None
                record.exc_text = None
        return True


def quiet_project_tracebacks() -> None:
    """Put `NoProjectTracebacks` on the handlers of Prefect's loggers (idempotent)."""
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, NoProjectTracebacks) for f in handler.filters):
                handler.addFilter(NoProjectTracebacks())


def child_command(args: list[str]) -> list[str]:
    """`[python, -m, uvicorn, ...]` run under the parent watch of this module."""
    if args[1:3] != _UVICORN:
        return args
    return [args[0], "-m", __name__, str(os.getpid()), *args[3:]]


def _popen_with_watch(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(child_command(list(args)), start_new_session=True, **kwargs)


def watch_parent(parent: int) -> None:
    """Stop this process (SIGTERM: uvicorn shuts down cleanly; SIGKILL after a grace) once
    `parent` is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:  # pragma: no cover - runs in the server child; tested by killing a parent
    parent = int(sys.argv[1])
    sys.argv = ["uvicorn", *sys.argv[2:]]
    watch_parent(parent)
    from uvicorn.main import main as uvicorn_main

    uvicorn_main()


if __name__ == "__main__":  # pragma: no cover
    main()
