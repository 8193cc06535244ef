"""Interrupted imports as real processes on PostgreSQL: `openslots roster import` run as a
terminal runs it (its own process group), sent SIGINT to that group or SIGKILL mid-file;
then the batch, the staging table, Prefect's temporary server and a rerun are checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from openslots.cli import app
from openslots.connectors.database.models import Client, ImportBatch, RosterStaging
from openslots.errors import RosterFileError
from tests.factories import person, roster_file
from tests.tasks.test_dispatch_processes import wait_until
from tests.tasks.test_roster_import import LOCATION, PROVIDER, run_import

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "openslots.cli", "roster", "import"]
ROWS = 30_000  # in chunks of 200: long enough to be caught staging

pytestmark = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


def wait_staging(db: Engine, proc: subprocess.Popen[str]) -> None:
    """Until the import has staged rows (the command failing first fails the test)."""
    wait_until(lambda: staged(db) > 0 or proc.poll() is not None, 120, "rows staged")
    if proc.poll() is not None:
        raise AssertionError(proc.communicate()[1][-3000:])


def staged(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(RosterStaging)).scalar_one()


def clients(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(Client)).scalar_one()


def only_batch(db: Engine) -> tuple[str, str | None]:
    with db.connect() as conn:
        status, error = conn.execute(select(ImportBatch.status, ImportBatch.error)).one()
    return str(status), error


def start_import(tmp_path: Path) -> subprocess.Popen[str]:
    """`openslots roster import` in its own session, as a terminal's foreground job."""
    path = roster_file(tmp_path / "big.csv", [person(n) for n in range(1, ROWS + 1)])
    env = dict(
        os.environ,
        OPENSLOTS_CHUNK_SIZE="200",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",  # a busy machine
    )
    return subprocess.Popen(
        [*COMMAND, str(path), "--provider", PROVIDER, "--location", LOCATION],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_rerun_completes(db: Engine, tmp_path: Path) -> None:
    summary = run_import(tmp_path / "big.csv")
    assert (summary.status, summary.accepted, summary.rejected) == ("completed", ROWS, 0)
    assert staged(db) == 0
    assert clients(db) == ROWS


def test_ctrl_c_marks_the_batch_interrupted_and_removes_its_staged_rows(
    db: Engine, tmp_path: Path
) -> None:
    proc = start_import(tmp_path)
    wait_staging(db, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    ours = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(ours) == 1 and "staged rows removed" in ours[0], err[-3000:]
    status, reason = only_batch(db)
    assert status == "interrupted" and reason is not None and "SIGINT" in reason
    assert staged(db) == 0 and clients(db) == 0
    assert_rerun_completes(db, tmp_path)


def test_sigterm_answers_like_ctrl_c(db: Engine, tmp_path: Path) -> None:
    proc = start_import(tmp_path)
    wait_staging(db, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert only_batch(db)[0] == "interrupted"
    assert staged(db) == 0


def test_a_killed_import_is_cleaned_up_by_roster_batches_and_leaves_no_server(
    db: Engine, tmp_path: Path
) -> None:
    proc = start_import(tmp_path)
    wait_staging(db, proc)
    servers = children(proc.pid)
    assert servers, "the temporary Prefect server runs as a child of the command"
    proc.kill()
    proc.communicate(timeout=60)
    assert only_batch(db)[0] == "running" and staged(db) > 0  # what SIGKILL leaves

    wait_until(lambda: not any(running(pid) for pid in servers), 60, "the server to stop")
    listed = CliRunner().invoke(app, ["roster", "batches", "--json"])
    assert listed.exit_code == 0, listed.output
    (batch,) = json.loads(listed.stdout)
    assert batch["status"] == "interrupted" and "no heartbeat" in batch["reason"]
    assert batch["started_at"] and batch["finished_at"]
    assert staged(db) == 0
    assert_rerun_completes(db, tmp_path)


def test_rejections_of_a_failed_batch_say_why(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "bad.csv", [person(1)], header=["Client ID", "Email"])
    with pytest.raises(RosterFileError):
        run_import(path)
    result = CliRunner().invoke(app, ["roster", "rejections", "1"])
    assert result.exit_code == 0
    assert "batch 1 failed:" in result.stdout


# `openslots roster import` whose Prefect API dies right after the apply step committed: the
# temporary server is killed (SIGKILL) the moment `apply_batch` returns, before the flow can
# record anything more.
API_DIES_AFTER_COMMIT = """
import sys
from prefect.server.api.server import SubprocessASGIServer
from openslots.tasks import roster

apply = roster.apply_batch

def apply_then_lose_the_api(*args, **kwargs):
    summary = apply(*args, **kwargs)
    for server in list(SubprocessASGIServer._instances.values()):
        if server.server_process is not None:
            server.server_process.kill()
            server.server_process.wait()
    return summary

roster.apply_batch = apply_then_lose_the_api
from openslots.cli import main
sys.argv = ["openslots", *sys.argv[1:]]
main()
"""


def test_prefect_api_lost_after_commit_is_a_warning(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "small.csv", [person(n) for n in range(1, 4)])
    env = dict(
        os.environ,
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_CLIENT_MAX_RETRIES="1",
    )
    args = ["roster", "import", str(path), "--provider", PROVIDER, "--location", LOCATION]
    done = subprocess.run(
        [sys.executable, "-c", API_DIES_AFTER_COMMIT, *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "committed, but Prefect could not record" in done.stderr
    report = json.loads(done.stdout)
    assert (report["status"], report["accepted"]) == ("completed", 3)
    assert clients(db) == 3


def test_sigterm_stops_the_mllp_listener_with_its_summary(db: Engine) -> None:
    from tests import hl7_messages as m
    from tests.mllp_client import ack_code, send

    proc = subprocess.Popen(
        [sys.executable, "-m", "openslots.cli", "hl7", "listen", "--port", "0", "--no-ingest"],
        cwd=ROOT,
        env=dict(os.environ),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    while "listening for MLLP on" not in line:
        assert line, "the listener exited before listening"
        line = proc.stderr.readline()
    port = int(line.split("listening for MLLP on ")[1].split()[0].rpartition(":")[2])
    assert [ack_code(a) for a in send(port, [m.EPIC_A04])] == ["AA"]
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "stopped: 1 messages" in err
