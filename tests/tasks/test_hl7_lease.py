"""A killed ingest leaves nothing behind (issue 8.9): an ingest run in a real subprocess is
killed with SIGKILL in the middle of a batch (patients applied, outcomes not yet marked); its
messages stay `applying` under its lease, no other run takes them while the lease holds, and
the next run after it applies every one exactly once. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, func, select

from openslots.connectors.database.models import Client, Hl7Message, Invitation
from openslots.domain import clock
from openslots.domain.clock import frozen_clock
from openslots.resources import resources
from openslots.tasks.hl7 import ingest_stored
from openslots.tasks.hl7_receive import StoreThenAck
from tests import hl7_messages as m
from tests.tasks.test_dispatch_processes import ROOT, wait_until

# `ingest_all` as the hl7-ingest flow runs it, with the step after applying the patients
# replaced by a signal and a long sleep: the parent kills the process there.
INGEST_THEN_HANG = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "import openslots.tasks.hl7 as hl7\n"
    "from openslots.resources import resources\n"
    "apply = hl7._apply_patients\n"
    "def apply_then_hang(*args, **kwargs):\n"
    "    apply(*args, **kwargs)\n"
    "    Path(sys.argv[1]).write_text('applied')\n"
    "    time.sleep(600)\n"
    "hl7._apply_patients = apply_then_hang\n"
    "hl7.ingest_all(resources().settings)\n"
)


def patient(n: int) -> bytes:
    return (
        m.EPIC_A04.replace("EPC0001", f"EPC9{n:03d}")
        .replace("E1001", f"E9{n:03d}")
        .replace("ines.n@", f"ines{n}@")
        .replace("Inés", f"Inés{'abcdefghij'[n]}")
        .encode()
    )


def statuses(db: Engine) -> list[tuple[str, bool]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(Hl7Message.status, Hl7Message.lease_expires_at).order_by(Hl7Message.id)
        )
        return [(str(status), lease is not None) for status, lease in rows]


def count(db: Engine, model: type) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_killed_ingest_is_claimed_again_after_its_lease_and_applied_once(
    db: Engine, tmp_path: Path
) -> None:
    StoreThenAck(db).handle([patient(n) for n in range(5)])
    marker = tmp_path / "applied"
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST_THEN_HANG, str(marker)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: marker.exists() or child.poll() is not None, 120, "the child's batch")
        assert marker.exists(), child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert statuses(db) == [("applying", True)] * 5  # claimed under a lease, never marked
    assert count(db, Client) == 5  # the batch's patients were applied before the kill

    assert ingest_stored.fn().messages == 0  # the lease holds: nobody else takes them
    lease = dt.timedelta(seconds=resources().settings.hl7_lease_seconds)
    with frozen_clock(clock.now() + lease + dt.timedelta(seconds=1)):
        counts = ingest_stored.fn()
    assert (counts.messages, counts.applied, counts.errors) == (5, 5, 0)
    assert statuses(db) == [("applied", False)] * 5
    assert (count(db, Client), count(db, Invitation)) == (5, 5)  # nothing applied twice
