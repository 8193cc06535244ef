"""Commands that run no flow answer without importing Prefect, pandas, pandera or a sender's
HTTP/SMTP stack (together ~2 s of a 2.7 s `outbox status`): only the commands that import rows,
run a flow or send pay for them. Checked in a fresh interpreter, since this test process has
imported everything already; no time is measured (speed lives in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from openslots.connectors.database import upgrade_database
from openslots.settings import Settings

HEAVY = [
    "prefect", "pandas", "pandera", "yagmail", "requests", "twilio", "hl7apy", "jinja2", "alembic",
]  # fmt: skip

# Read and write commands that touch the database but run no flow.
COMMANDS = [
    ["--help"],
    ["prefect", "register-blocks", "--help"],
    ["providers", "list", "--json"],
    ["connections", "list", "--provider", "P", "--json"],
    ["connections", "set-status", "1", "paused", "--json"],
    ["invitations", "list", "--provider", "P", "--json"],
    ["outbox", "status", "--json"],
    ["outbox", "list", "--json"],
    ["slots", "list", "--json"],
    ["hl7", "errors", "--json"],
    ["roster", "rejections", "1", "--json"],
]

PROBE = """
import json, sys
from openslots.cli import app
commands, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
exits = []
for argv in commands:
    sys.argv = ["openslots", *argv]
    try:
        app()
    except SystemExit as done:
        exits.append(done.code)
heavy = sorted(name for name in watched if name in sys.modules)
print(json.dumps({"exits": exits, "heavy": heavy}))
"""


def test_commands_that_run_no_flow_import_no_heavy_library(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'openslots.db'}"
    upgrade_database(Settings(database_url=database))
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(COMMANDS), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OPENSLOTS_DATABASE_URL": database, "OPENSLOTS_HOME": str(tmp_path), "PATH": ""},
        check=True,
    )
    found = json.loads(done.stdout.splitlines()[-1])
    # Each command ran to its own answer (0, or 1 for "unknown provider"/"no such id"), not a
    # crash on a missing import.
    assert set(found["exits"]) <= {0, 1}, done.stderr
    assert len(found["exits"]) == len(COMMANDS)
    assert found["heavy"] == []
