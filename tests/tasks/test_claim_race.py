"""Many claims racing from separate processes on PostgreSQL: exactly one wins, every trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import Engine

from openslots import api
from openslots.domain.clock import frozen_clock
from tests.tasks.test_open_slots import LOCATION, NOON, PROVIDER, TOMORROW_10, add, token_for

CLAIMERS = 6
TRIALS = 5
# Each process imports once, says it is ready, then claims one slot per "go" line from the
# test: all processes are released together, as close to a real race as processes get.
CLAIMER = """
import json, sys
from openslots import api
print("ready", flush=True)
for token in sys.argv[1:]:
    sys.stdin.readline()
    print(json.dumps(api.claim_slot(token)), flush=True)
"""


def test_concurrent_claims_from_separate_processes_have_exactly_one_winner(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; the race that matters is PostgreSQL's")
    monkeypatch.setenv("OPENSLOTS_SECRET_KEY", "s" * 40)
    # Every trial offers the same connections: the contact cap would stop them after three.
    monkeypatch.setenv("OPENSLOTS_ALERT_MAX_PER_WEEK", "0")
    ids = [add(db, n) for n in range(1, CLAIMERS + 1)]
    with frozen_clock(NOON):
        slots = [
            api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)["slot_id"] for _ in range(TRIALS)
        ]
        tokens = {cid: [token_for(db, slot, cid) for slot in slots] for cid in ids}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, *tokens[cid]],
            env=dict(os.environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for cid in ids
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for slot in slots:
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            results = []
            for process in processes:
                assert process.stdout is not None
                results.append(json.loads(process.stdout.readline())["result"])
            assert sorted(results) == ["taken"] * (CLAIMERS - 1) + ["won"], f"slot {slot}"
        claimed = {s["id"]: s for s in api.list_slots(status="claimed")}
        assert sorted(claimed) == sorted(slots)
        assert {s["claims_tried"] for s in claimed.values()} == {CLAIMERS}
    finally:
        for process in processes:
            process.kill()
            process.wait()
