"""`openslots slots ...`, `providers add --timezone` and `connections set-order` through Typer's
runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots.cli import app
from openslots.domain.clock import frozen_clock
from tests.tasks.test_open_slots import add, token_for

runner = CliRunner()
# 10:00 in Chicago on 5 March 2030 (16:00 UTC).
NOW = dt.datetime(2030, 3, 5, 16, 0, tzinfo=dt.UTC)


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def frozen(db: Engine) -> Iterator[None]:
    with frozen_clock(NOW):
        yield


def test_open_claim_close_explain_and_list(db: Engine, frozen: None) -> None:
    code, _ = run(
        "providers", "add", "Dr. Cli", "--location", "Loop", "--timezone", "America/Chicago"
    )
    assert code == 0
    first, second = (
        add(db, 1, provider="Dr. Cli", location="Loop"),
        add(db, 2, provider="Dr. Cli", location="Loop"),
    )
    assert run("connections", "set-order", str(second), "1")[0] == 0
    assert run("connections", "set-order", str(first), "2")[0] == 0
    code, opened = run(
        "slots", "open", "--provider", "Dr. Cli", "--location", "Loop",
        "--start", "2030-03-06T09:30", "--minutes", "30", "--mode", "serial",
        "--timeout-minutes", "15",
    )  # fmt: skip
    assert (code, opened) == (
        0,
        {"slot_id": 1, "mode": "serial", "eligible": 2, "alerts_queued": 1, "status": "open"},
    )
    code, explained = run("slots", "explain", "1")
    assert code == 0
    assert {r["connection_id"]: (r["outcome"], r["reason"]) for r in explained} == {
        second: ("alerted", "eligible"),
        first: ("not_alerted", "serial_not_reached"),
    }
    assert run("slots", "claim", token_for(db, 1, second)) == (0, {"slot_id": 1, "result": "won"})
    assert run("slots", "claim", "forged.token") == (1, {"slot_id": None, "result": "invalid"})
    code, listed = run("slots", "list", "--status", "claimed", "--provider", "Dr. Cli")
    assert code == 0
    assert [(s["id"], s["starts_at"], s["winner_connection_id"]) for s in listed] == [
        (1, "2030-03-06T15:30:00+00:00", second)
    ]
    assert run("slots", "close", "1")[1] == {
        "slot_id": 1,
        "closed": False,
        "status": "claimed",
        "closed_reason": None,
    }
    assert run("slots", "close", "7")[0] == 1
    assert run("slots", "open", "--provider", "Dr. Cli", "--location", "Loop", "--start",
               "tomorrow", "--minutes", "30")[0] == 1  # fmt: skip
    assert run("providers", "add", "Dr. Cli", "-l", "X", "--timezone", "Mars/Base")[0] == 1
