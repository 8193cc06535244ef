"""A fleet, end to end: `prefect deploy --all` from this repository against `prefect server
start` (its own PREFECT_HOME, a loopback port), a process work pool as README creates it, a
process worker, and runs of the roster deployments on a fresh SQLite database whose URL the
worker reads from a Prefect Secret block (`openslots prefect register-blocks`), not from its
environment. Also: `prefect deploy` without OPENSLOTS_DEPLOY_DIR fails at once, naming it.

One server for the module (starting one costs seconds); its scheduler is off so that only the
runs made here run. Run alone with `pytest -m deploy`; CI runs it with the rest.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openslots.connectors.database import upgrade_database
from openslots.serve import Child, descendants, start_child, wait_for_api
from openslots.settings import Settings
from tests.factories import person, roster_file
from tests.prefect_api import api as _api
from tests.prefect_api import clean_environ
from tests.smtp_server import free_port

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
OPENSLOTS = [sys.executable, "-m", "openslots.cli"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DEPLOYMENTS = {
    "nightly-roster-sync", "roster-sync", "registrations-import", "hl7-drop", "hl7-import",
    "hl7-ingest", "dispatch", "invitation-resend",
}  # fmt: skip


@dataclass
class Fleet:
    api: str
    root: Path
    env: dict[str, str]  # a client's: the API, its own PREFECT_HOME, no OPENSLOTS_* setting
    server: Child


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ", 1)[1].startswith("Z")  # a zombie is gone
    except (OSError, IndexError):
        return False


def _gone(pids: list[int], seconds: float = 30) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _run(
    argv: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _deployments(fleet: Fleet) -> dict[str, dict[str, Any]]:
    found = _api("POST", f"{fleet.api}/deployments/filter", json={})
    return {d["name"]: d for d in found}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    base = clean_environ()
    base["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    port = free_port()
    server = start_child(
        "prefect-server",
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        base | {
            "PREFECT_HOME": str(root / "server-home"),
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # only the runs made here
            "PREFECT_UI_ENABLED": "false",
        },
        root / "logs",
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    env = base | {"PREFECT_API_URL": api, "PREFECT_HOME": str(root / "client-home")}
    fleet = Fleet(api, root, env, server)
    try:
        wait_for_api(api, server, timeout=180)
        # What `prefect work-pool create openslots --type process` (README) does, without
        # starting one more Prefect CLI (seconds each).
        from prefect.workers.process import ProcessWorker

        template = ProcessWorker.get_default_base_job_template()
        _api(
            "POST",
            f"{api}/work_pools/",
            json={"name": "openslots", "type": "process", "base_job_template": template},
        )
        yield fleet
    finally:
        pids = [server.process.pid, *descendants(server.process.pid)]
        server.stop()
        left = _gone(pids)
        if left:
            pytest.fail(f"the Prefect server left processes running: {left}")


def test_prefect_deploy_without_openslots_deploy_dir_fails_at_once_naming_it(
    fleet: Fleet,
) -> None:
    before = {name: d["updated"] for name, d in _deployments(fleet).items()}
    done = _run([*PREFECT, "deploy", "--all"], fleet.env)
    assert done.returncode != 0
    assert "OPENSLOTS_DEPLOY_DIR is unset or not an absolute path" in done.stdout + done.stderr
    # Failed at the first deployment's build step: nothing was registered or changed.
    assert {name: d["updated"] for name, d in _deployments(fleet).items()} == before


def test_deployed_roster_sync_runs_on_a_process_worker(fleet: Fleet) -> None:
    database = fleet.root / "secret-db" / "openslots.db"
    database_url = f"sqlite:///{database}"
    upgrade_database(Settings(database_url=database_url))
    home = fleet.root / "worker-home"
    drop = home / "drop" / "roster" / "Dr Lee" / "Main St"
    drop.mkdir(parents=True)
    roster_file(drop / "nightly.csv", [person(3)])
    export = roster_file(fleet.root / "exports" / "roster.csv", [person(1), person(2)])
    checkout_data = REPO / "openslots-data"
    had_checkout_data = checkout_data.exists()

    # Started first: it polls the pool while the deployments are registered. Its environment
    # has no database URL: the flow runs read it from the Secret block registered meanwhile.
    worker = start_child(
        "worker",
        [*PREFECT, "worker", "start", "--pool", "openslots", "--type", "process"],
        fleet.env | {"OPENSLOTS_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1"},
        fleet.root / "logs",
    )
    try:
        registering = subprocess.Popen(
            [*OPENSLOTS, "prefect", "register-blocks", "--json"],
            cwd=REPO,
            env=fleet.env | {"OPENSLOTS_DATABASE_URL": database_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deployed = _run(
            [*PREFECT, "deploy", "--all"], fleet.env | {"OPENSLOTS_DEPLOY_DIR": str(REPO)}
        )
        registered, _ = registering.communicate(timeout=300)
        assert registering.returncode == 0, registered
        blocks = {b["block"]: b["status"] for b in json.loads(registered)["blocks"]}
        assert blocks["openslots-database-url"] == "created"
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        deployments = _deployments(fleet)
        assert set(deployments) >= DEPLOYMENTS
        nightly = deployments["nightly-roster-sync"]
        assert nightly["schedules"][0]["schedule"]["timezone"] == "America/New_York"
        assert nightly["global_concurrency_limit"]["limit"] == 1
        assert nightly["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        runs = {
            "roster-sync": _api(
                "POST",
                f"{fleet.api}/deployments/{deployments['roster-sync']['id']}/create_flow_run",
                json={
                    "parameters": {
                        "path": str(export),
                        "provider": "Dr Rivera",
                        "location": "Main St",
                    }
                },
            ),
            "nightly-roster-sync": _api(
                "POST", f"{fleet.api}/deployments/{nightly['id']}/create_flow_run", json={}
            ),
        }
        states = _wait_for(fleet, {name: run["id"] for name, run in runs.items()}, worker)
        assert states == dict.fromkeys(runs, "COMPLETED"), worker.tail(60)
    finally:
        pids = [worker.process.pid, *descendants(worker.process.pid)]
        worker.stop()
        assert _gone(pids) == []

    with sqlite3.connect(database) as db:
        batches = db.execute(
            "SELECT provider_name, location_name, mode, status, accepted FROM import_batches"
            " ORDER BY provider_name"
        ).fetchall()
    assert batches == [
        ("Dr Lee", "Main St", "sync", "completed", 1),
        ("Dr Rivera", "Main St", "invite", "completed", 2),
    ]
    # The nightly run found its drop under the worker's OPENSLOTS_HOME and moved the file.
    processed = list((home / "drop" / "processed" / "roster").rglob("*-nightly.csv"))
    assert len(processed) == 1 and not list(drop.iterdir())
    # Nothing was written into the checkout the worker ran the flows from.
    assert checkout_data.exists() == had_checkout_data
    assert not (home / "openslots.db").exists()  # the block's database, not the default


def _wait_for(fleet: Fleet, runs: dict[str, str], worker: Child) -> dict[str, str]:
    deadline = time.monotonic() + 300
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {
            name: _api("GET", f"{fleet.api}/flow_runs/{run_id}")["state"]["type"]
            for name, run_id in runs.items()
        }
        if set(states.values()) <= FINAL:
            return states
        assert worker.process.poll() is None, "the worker stopped:\n" + worker.tail(60)
        time.sleep(1)
    pytest.fail(f"runs not finished: {states}\n{worker.tail(60)}")
