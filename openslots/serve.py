"""`openslots serve`: everything one practice needs, in one long-running command.

It upgrades the database (it is the long-running owner of it), starts a Prefect server as a
child process with its own PREFECT_HOME under OPENSLOTS_HOME (unless PREFECT_API_URL already
names one), records the API address in OPENSLOTS_HOME/serve.json so that CLI commands in the
same working directory use that server instead of starting a temporary one, optionally starts
the MLLP listener and the patient pages as child processes, and serves every flow with its
schedule through Prefect's `serve` in this process.

Children run in their own process group (a Ctrl-C in the terminal reaches `serve` only, which
then stops them in order) and die with `serve` even when it is SIGKILLed (Linux's parent-death
signal). Ctrl-C or SIGTERM stops everything within seconds: flow runs in flight are cancelled
by Prefect's runner and their work is resumed by the next run (leases, batch cleanup).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openslots.errors import ConfigurationError

if TYPE_CHECKING:  # the CLI imports this module first thing: keep it light
    from openslots.settings import Settings

log = logging.getLogger("openslots.serve")

SERVE_FILE = "serve.json"
PR_SET_PDEATHSIG = 1
STOP_SECONDS = 5.0  # per child, after SIGTERM, before SIGKILL
# After Ctrl-C/SIGTERM, Prefect's runner cancels the flow runs in flight and stops; if that has
# not happened within this, serve stops everything itself (the issue allows 30 s in all).
FORCE_AFTER_SECONDS = 20.0


def serve_file(home: Path) -> Path:
    return home / SERVE_FILE


def _home_from_environment(environ: Mapping[str, str]) -> Path:
    """OPENSLOTS_HOME as Settings reads it, without importing pydantic (the CLI calls this
    before anything else)."""
    return Path(environ.get("OPENSLOTS_HOME", "openslots-data")).expanduser().resolve()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def served_api_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The Prefect API a running `openslots serve` of this OPENSLOTS_HOME recorded, if its
    process is alive; None otherwise (a stale file of a killed serve is ignored)."""
    try:
        recorded = json.loads(serve_file(_home_from_environment(environ)).read_text())
        pid, url = int(recorded["pid"]), str(recorded["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if _alive(pid) else None


def adopt_served_api(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Point this process at the running `serve`'s Prefect API unless PREFECT_API_URL is set.
    Must run before Prefect reads its settings (the CLI calls it first thing)."""
    if environ.get("PREFECT_API_URL"):
        return None
    url = served_api_url(environ)
    if url is not None:
        environ["PREFECT_API_URL"] = url
    return url


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_SECONDS)

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_child(name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path) -> Child:
    """Start `argv` in its own process group, its output in `logs`/NAME.log, dying with us."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return Child(name, process, log_path)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_api(url: str, child: Child | None, timeout: float = 120.0) -> None:
    """Wait until the Prefect API answers its health check (or the server child died)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise ConfigurationError(
                f"the Prefect server stopped while starting (exit {child.process.returncode}); "
                f"its log, {child.log_path}, ends with:\n{child.tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)
    raise ConfigurationError(f"the Prefect API at {url} did not answer within {timeout:.0f} s")


@dataclass
class Served:
    """What `serve` started (for the summary and for stopping)."""

    api_url: str
    children: list[Child] = field(default_factory=list)
    record: Path | None = None

    def stop(self) -> None:
        for child in reversed(self.children):  # the server last: the others report to it
            child.stop()
        if self.record is not None:
            with contextlib.suppress(OSError):
                recorded = json.loads(self.record.read_text())
                if recorded.get("pid") == os.getpid():
                    self.record.unlink()


@contextlib.contextmanager
def started(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 4200,
    mllp_port: int | None = None,
    web_port: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Iterator[Served]:
    """Start the Prefect server (unless PREFECT_API_URL names one), the optional listeners,
    record the API address; stop all of them on the way out, whatever happened."""
    home = settings.resolved_home()
    logs = home / "logs"
    env = dict(environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    served = Served(api_url=env.get("PREFECT_API_URL", ""))
    try:
        server: Child | None = None
        if not served.api_url:
            if not port_free(host, port):
                raise ConfigurationError(
                    f"port {port} on {host} is in use: pass another with --port, or point "
                    "PREFECT_API_URL at the Prefect server that runs there"
                )
            served.api_url = f"http://{host}:{port}/api"
            server_env = {**env, "PREFECT_HOME": str(settings.resolved_prefect_home())}
            server = start_child(
                "prefect-server",
                [sys.executable, "-m", "prefect", "server", "start", "--host", host,
                 "--port", str(port)],
                server_env,
                logs,
            )  # fmt: skip
            served.children.append(server)
        wait_for_api(served.api_url, server)
        env["PREFECT_API_URL"] = served.api_url
        os.environ["PREFECT_API_URL"] = served.api_url  # this process's flows and runner
        cli = [sys.executable, "-m", "openslots.cli"]
        if mllp_port is not None:
            served.children.append(
                start_child("mllp", [*cli, "hl7", "listen", "--host", host, "--port",
                                     str(mllp_port)], env, logs)
            )  # fmt: skip
        if web_port is not None:
            served.children.append(
                start_child("web", [*cli, "web", "--host", host, "--port", str(web_port)],
                            env, logs)
            )  # fmt: skip
        served.record = serve_file(home)
        served.record.parent.mkdir(parents=True, exist_ok=True)
        children = {child.name: child.process.pid for child in served.children}
        served.record.write_text(
            json.dumps({"pid": os.getpid(), "api_url": served.api_url, "children": children})
        )
        yield served
    finally:
        served.stop()


# The slot id from the event's label, as JSON so that the run gets an int (a rendered Jinja
# template is a string, which the deployment's parameter schema would refuse).
SLOT_ID_FROM_EVENT = {
    "__prefect_kind": "json",
    "value": {
        "__prefect_kind": "jinja",
        "template": "{{ event.resource['openslots.slot.id'] }}",
    },
}


def slot_opened_trigger() -> Any:
    """Run open-slot-alerts for each `openslots.slot.opened` event, with that slot's id."""
    from prefect.events import DeploymentEventTrigger

    from openslots.events import SLOT_OPENED, SLOT_RESOURCE_PREFIX

    return DeploymentEventTrigger(
        name="open-slot-alerts on openslots.slot.opened",
        expect={SLOT_OPENED},
        match={"prefect.resource.id": f"{SLOT_RESOURCE_PREFIX}*"},
        for_each={"prefect.resource.id"},
        parameters={"slot_id": SLOT_ID_FROM_EVENT},
    )


def deployments(settings: Settings) -> list[Any]:
    """Every flow with its schedule or trigger, as Prefect runner deployments (parameters:
    none, paths, or the slot id of an event; never patient data)."""
    from prefect.schedules import Cron

    from openslots.flows.dispatch import dispatch
    from openslots.flows.drops import hl7_drop, roster_drop
    from openslots.flows.hl7_ingest import hl7_ingest
    from openslots.flows.open_slot_alerts import open_slot_alerts

    zone = settings.default_timezone
    return [
        open_slot_alerts.to_deployment(
            "open-slot-alerts", tags=["openslots", "slots"], triggers=[slot_opened_trigger()],
            description="Offer a slot as soon as it opens (on each openslots.slot.opened event).",
        ),
        dispatch.to_deployment(
            "dispatch", interval=60, concurrency_limit=1, tags=["openslots", "dispatch"],
            description="Send what is owed: invitations, resends, Open Slots offers.",
        ),
        hl7_ingest.to_deployment(
            "hl7-ingest", interval=300, concurrency_limit=1, tags=["openslots", "hl7"],
            description="Apply HL7 messages stored but not yet applied (listener backlog).",
        ),
        hl7_drop.to_deployment(
            "hl7-drop", interval=60, concurrency_limit=1, tags=["openslots", "hl7"],
            description="Import the HL7 files in the drop directory.",
        ),
        roster_drop.to_deployment(
            "nightly-roster-sync",
            schedules=[Cron("0 2 * * *", timezone=zone)],
            concurrency_limit=1,
            tags=["openslots", "roster"],
            description="Sync the rosters in drop/roster/PROVIDER/LOCATION/ each night.",
        ),
    ]  # fmt: skip


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), deepest last."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in task.read_text().split()]
                found.extend(children)
                queue.extend(children)
    return found


def run_deployments(served: Served, settings: Settings) -> None:
    """Serve every deployment until Ctrl-C or SIGTERM (Prefect's `serve`, with a deadline on
    its shutdown: past FORCE_AFTER_SECONDS, the flow runs still going and the children are
    killed and the process ends with exit code 1)."""
    import asyncio
    import threading

    from prefect.runner import Runner

    def force() -> None:
        log.error("serve: still stopping after %.0f s; killing what is left", FORCE_AFTER_SECONDS)
        for pid in reversed(descendants(os.getpid())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        served.stop()
        os._exit(1)

    deadline = threading.Timer(FORCE_AFTER_SECONDS, force)
    deadline.daemon = True

    class DeadlineRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            if not deadline.is_alive():
                deadline.start()
            super().handle_sigterm(*args, **kwargs)

    def interrupt(_signum: int, _frame: Any) -> None:
        if not deadline.is_alive():
            deadline.start()
        raise KeyboardInterrupt

    runner = DeadlineRunner(pause_on_shutdown=False)
    for deployment in deployments(settings):
        runner.add_deployment(deployment)
    signal.signal(signal.SIGINT, interrupt)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass
    finally:
        # Hand the last logs and events to the server while it still runs: at exit, with the
        # server gone, Prefect's workers would retry against a closed port for a long time.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            with contextlib.suppress(Exception):
                worker.drain_all(timeout=5)
        deadline.cancel()


def summary(served: Served, settings: Settings) -> list[str]:
    """What the user needs to know, one line each."""
    ui = served.api_url.removesuffix("/api")
    drop = settings.resolved_drop_dir()
    lines = [
        f"Prefect UI: {ui}",
        f"roster drop: {drop / 'roster'}/PROVIDER/LOCATION/*.csv (nightly at 02:00 "
        f"{settings.default_timezone})",
        f"HL7 drop: {drop / 'hl7'}/ (every minute)",
        f"logs: {settings.resolved_home() / 'logs'}",
    ]
    for child in served.children:
        if child.name != "prefect-server":
            lines.append(f"{child.name}: pid {child.process.pid}, log {child.log_path}")
    return lines


def prepare_drop_directories(settings: Settings) -> None:
    drop = settings.resolved_drop_dir()
    for kind in ("roster", "hl7"):
        (drop / kind).mkdir(parents=True, exist_ok=True)
