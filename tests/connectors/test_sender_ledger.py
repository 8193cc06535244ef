"""sender_ledger.SenderLedger: a sending thread's own connection, and its one-round-trip step
"previous message sent + next one started" (PostgreSQL: a pipeline of two statements).

It must answer exactly as record_sent + mark_started do, on both databases, including when two
workers send the email and the text of one attempt at the same moment (counted once).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update

from openslots.connectors.database.models import Invitation
from openslots.connectors.database.models import OutboxMessage as Outbox
from openslots.connectors.database.sender_ledger import SenderLedger
from openslots.domain import clock
from openslots.tasks.dispatch import materialise_intents
from tests.factories import person, roster_file
from tests.tasks.test_roster_import import run_import


def _messages(db: Engine, tmp_path: Path) -> dict[str, int]:
    """One invitation with an email and a text owed: {channel: outbox id}."""
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    assert materialise_intents.fn() == 2
    with db.connect() as conn:
        rows = conn.execute(select(Outbox.channel, Outbox.id)).all()
    return {str(channel): int(outbox_id) for channel, outbox_id in rows}


def _claim(db: Engine, worker: str, outbox_id: int) -> None:
    with db.begin() as conn:
        conn.execute(
            update(Outbox)
            .where(Outbox.id == outbox_id)
            .values(status="sending", worker_id=worker, lease_expires_at=clock.now())
        )


def _state(db: Engine) -> tuple[dict[int, tuple[str, int, bool]], tuple[str, int]]:
    """{outbox id: (status, attempts, started)}, (invitation status, send_count)."""
    with db.connect() as conn:
        rows = conn.execute(
            select(Outbox.id, Outbox.status, Outbox.attempts, Outbox.send_started_at)
        ).all()
        invitation = conn.execute(select(Invitation.status, Invitation.send_count)).one()
    return (
        {int(r.id): (str(r.status), int(r.attempts), r.send_started_at is not None) for r in rows},
        (str(invitation.status), int(invitation.send_count)),
    )


def test_sent_and_started_answers_as_record_sent_and_mark_started(
    db: Engine, tmp_path: Path
) -> None:
    ids = _messages(db, tmp_path)
    email, sms = ids["email"], ids["sms"]
    _claim(db, "me", email)
    _claim(db, "me", sms)
    ledger = SenderLedger(db, "me")
    other = SenderLedger(db, "someone-else")
    try:
        assert ledger.sent_and_started(None, email, clock.now()) == (False, True)
        # Not that worker's: nothing is written.
        assert other.sent_and_started(email, sms, clock.now()) == (False, False)
        assert _state(db) == (
            {email: ("sending", 1, True), sms: ("sending", 0, False)},
            ("Queued", 0),
        )
        assert ledger.sent_and_started(email, sms, clock.now()) == (True, True)
        assert _state(db) == ({email: ("sent", 1, True), sms: ("sending", 1, True)}, ("Sent", 1))
        # The text of the same attempt: the invitation counts one send, not two.
        assert ledger.sent_and_started(sms, None, clock.now()) == (True, False)
        assert _state(db) == ({email: ("sent", 1, True), sms: ("sent", 1, True)}, ("Sent", 1))
        # An answer for a message already recorded changes nothing.
        assert ledger.sent_and_started(sms, None, clock.now()) == (False, False)
    finally:
        ledger.close()
        other.close()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_two_workers_sending_one_attempt_at_once_count_it_once(db: Engine, tmp_path: Path) -> None:
    """Worker A's transaction (email sent, invitation counted) holds the invitation's row while
    worker B records the text: B waits for the row, then sees A's email and adds no send."""
    ids = _messages(db, tmp_path)
    _claim(db, "a", ids["email"])
    _claim(db, "b", ids["sms"])
    ledger = SenderLedger(db, "b")
    assert ledger.sent_and_started(None, ids["sms"], clock.now()) == (False, True)
    answers: list[tuple[bool, bool]] = []
    with db.connect() as a:
        a.execute(select(Invitation.id).with_for_update())
        a.execute(update(Outbox).where(Outbox.id == ids["email"]).values(status="sent"))
        a.execute(update(Invitation).values(status="Sent", send_count=Invitation.send_count + 1))
        b = threading.Thread(
            target=lambda: answers.append(ledger.sent_and_started(ids["sms"], None, clock.now()))
        )
        b.start()
        with db.connect() as watcher:  # B is waiting for the invitation's row lock
            deadline = time.monotonic() + 30
            while not watcher.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar():
                assert time.monotonic() < deadline, "B never waited for the row"
                time.sleep(0.01)
        a.commit()
        b.join(timeout=30)
    ledger.close()
    assert answers == [(True, False)]
    statuses, invitation = _state(db)
    assert invitation == ("Sent", 1)
    assert {status for status, _, _ in statuses.values()} == {"sent"}
