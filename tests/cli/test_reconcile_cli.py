"""`openslots slots reconcile`, `slots list --unreconciled / --conflicts` and `audit --slot`
through Typer's runner, on SQLite and PostgreSQL (issue #15)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from openslots.domain.clock import frozen_clock
from tests.cli.test_slots_cli import run
from tests.tasks.test_reconcile import NOON, claimed_slot


def test_reconcile_from_the_cli_lists_and_audits(db: Engine) -> None:
    with frozen_clock(NOON) as clock:
        slot_id, winner = claimed_slot(db)
        clock.advance(dt.timedelta(hours=4))
        code, rows = run("slots", "list", "--unreconciled")
        assert (code, [r["id"] for r in rows]) == (0, [slot_id])
        assert rows[0]["winner_connection_id"] == winner
        assert run("slots", "list", "--conflicts") == (0, [])
        code, done = run("slots", "reconcile", str(slot_id), "--actor", "sched-1")
        assert (code, done) == (
            0,
            {
                "slot_id": slot_id,
                "changed": True,
                "reconciled_at": "2030-03-05T21:00:00+00:00",
                "reconciled_by": "sched-1",
            },
        )
        assert run("slots", "list", "--unreconciled") == (0, [])
        code, [row] = run("slots", "list", "--status", "claimed")
        assert (row["reconciled_at"], row["reconciled_by"]) == (
            "2030-03-05T21:00:00+00:00",
            "sched-1",
        )
        code, events = run("audit", "--slot", str(slot_id))
        assert [(e["action"], e["actor"]) for e in events] == [("reconciled", "sched-1")]
        assert run("slots", "reconcile", "99") == (1, {"error": "no slot 99"})
