"""`openslots serve` end to end, with a real Prefect server: it starts one with its own
PREFECT_HOME, serves the deployments, imports files dropped into the drop directories when the
deployments run, lends its server to CLI commands of the same OPENSLOTS_HOME, and stops every
process it started on SIGTERM, and with it when it is SIGKILLed.

Run alone with `pytest -m serve`; CI runs it with the rest (each test starts a server: ~15 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import person, roster_file
from tests.hl7_messages import CERNER_A08, EPIC_A04
from tests.mllp_client import ack_code, send
from tests.prefect_api import api as _api
from tests.prefect_api import clean_environ
from tests.smtp_server import free_port

pytestmark = pytest.mark.serve
OPENSLOTS = [sys.executable, "-m", "openslots.cli"]
START_TIMEOUT = 180.0


@dataclass
class Serving:
    process: subprocess.Popen[bytes]
    home: Path
    env: dict[str, str]
    record: dict[str, Any]
    mllp_port: int
    web_port: int

    @property
    def api(self) -> str:
        return str(self.record["api_url"])

    def database(self) -> sqlite3.Connection:
        return sqlite3.connect(self.home / "openslots.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def _gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Serving]:
    home = tmp_path / "home"
    env = clean_environ()
    env |= {
        "OPENSLOTS_HOME": str(home),
        "PREFECT_HOME": str(tmp_path / "client-prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = (tmp_path / "serve.log").open("wb")
    mllp_port, web_port = free_port(), free_port()
    ports = ["--port", str(free_port()), "--mllp-port", str(mllp_port), "--web-port", str(web_port)]
    process = subprocess.Popen(
        [*OPENSLOTS, "serve", *ports],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    record_file = home / "serve.json"
    deadline = time.monotonic() + START_TIMEOUT
    while not record_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("serve did not start:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        time.sleep(0.25)
    record = json.loads(record_file.read_text())
    serving = Serving(process, home, env, record, mllp_port, web_port)
    try:
        yield serving
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        _gone(list(serving.record["children"].values()), 15)
        log.close()


def _listening(port: int) -> int:
    """`port`, once something accepts connections on it (serve's children start after it)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return port
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.25)


def _run_deployment(api: str, name: str) -> dict[str, Any]:
    """Start a run of deployment `name` through the API and wait for its final state."""
    deadline = time.monotonic() + 120  # serve registers its deployments after it records
    while True:
        found = _api("POST", f"{api}/deployments/filter", json={})
        deployment = next((d for d in found if d["name"] == name), None)
        if deployment is not None:
            break
        assert time.monotonic() < deadline, f"no deployment {name}: {found}"
        time.sleep(0.5)
    run = _api("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", json={})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = _api("GET", f"{api}/flow_runs/{run['id']}")["state"]
        if state["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return dict(state)
        time.sleep(0.5)
    pytest.fail(f"the {name} run did not finish")


def test_serve_runs_the_drops_lends_its_server_and_stops_everything(
    serving: Serving, tmp_path: Path
) -> None:
    drop = serving.home / "drop"
    roster_dir = drop / "roster" / "Dr Lee" / "Main St"
    roster_dir.mkdir(parents=True)
    roster_file(roster_dir / "nightly.csv", [person(1), person(2)])
    (drop / "hl7" / "adt_0001.txt").write_text(EPIC_A04)
    (drop / "hl7" / "notes.md").write_text("not HL7")

    # The MLLP listener and the patient pages run beside the deployments.
    assert [ack_code(a) for a in send(_listening(serving.mllp_port), [CERNER_A08])] == ["AA"]
    page = httpx.get(f"http://127.0.0.1:{_listening(serving.web_port)}/claim/x", timeout=30)
    assert page.status_code == 400 and "This link is not valid" in page.text

    assert _run_deployment(serving.api, "nightly-roster-sync")["type"] == "COMPLETED"
    assert _run_deployment(serving.api, "hl7-drop")["type"] == "COMPLETED"

    with serving.database() as db:
        batches = db.execute(
            "SELECT provider_name, location_name, status, accepted FROM import_batches"
            " WHERE mode = 'sync' AND source LIKE '%nightly.csv'"
        ).fetchall()
        stored = db.execute(
            "SELECT control_id, status FROM hl7_messages ORDER BY control_id"
        ).fetchall()
    assert batches == [("Dr Lee", "Main St", "completed", 2)]
    assert stored == [("CRN-88", "applied"), ("EPC0001", "applied")]
    # Every dropped file moved out of the drop, each to where its outcome says.
    left = sorted(
        (p.relative_to(drop).parent.as_posix(), p.name.split("-", 1)[1])
        for p in drop.rglob("*")
        if p.is_file()
    )
    assert left == [
        ("failed/hl7", "notes.md"),
        ("processed/hl7", "adt_0001.txt"),
        ("processed/roster/Dr Lee/Main St", "nightly.csv"),
    ]

    # A command in the same home runs its flow on serve's server, not a temporary one.
    roster = tmp_path / "manual.csv"
    roster_file(roster, [person(3)])
    done = subprocess.run(
        [*OPENSLOTS, "roster", "import", str(roster), "--provider", "P", "--location", "L",
         "--json"],
        cwd=tmp_path, env=serving.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = _api(
        "POST",
        f"{serving.api}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["roster-sync"]}}},
    )
    assert len(runs) == 2  # the drop's and the command's

    serving.process.send_signal(signal.SIGTERM)
    serving.process.wait(30)
    assert serving.process.returncode == 0
    assert _gone(list(serving.record["children"].values()), 30) == []
    assert not (serving.home / "serve.json").exists()
    for port in (serving.mllp_port, serving.web_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_server_dies_with_a_killed_serve(serving: Serving) -> None:
    children = list(serving.record["children"].values())
    assert children and all(_alive(pid) for pid in children)
    serving.process.kill()
    serving.process.wait(30)
    assert _gone(children, 30) == []
