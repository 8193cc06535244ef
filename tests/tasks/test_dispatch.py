"""Dispatch on SQLite and PostgreSQL: each message sent exactly once, outcomes recorded."""

from __future__ import annotations

import datetime as dt
import email
import json
from pathlib import Path

from sqlalchemy import Engine, select, update

from openslots.connectors.database.models import Invitation, OptOut, OutboxMessage
from openslots.tasks.dispatch import dispatch_outbox
from tests.factories import person, roster_file
from tests.tasks.test_roster_import import run_import


def statuses(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        rows = conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)).all()
    return dict(rows)


def test_every_message_is_sent_once_and_invitations_show_sent(
    db: Engine, tmp_path: Path, isolated_env: Path
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1), person(2, mobile_phone="")]))
    first = dispatch_outbox.fn()
    second = dispatch_outbox.fn()
    assert (first.claimed, first.sent, first.by_channel) == (3, 3, {"email": 2, "sms": 1})
    assert (second.claimed, second.sent) == (0, 0)
    assert set(statuses(db).values()) == {"sent"}
    with db.connect() as conn:
        invitations = conn.execute(
            select(Invitation.status, Invitation.send_count, Invitation.first_sent_at)
        ).all()
    assert [(s, n) for s, n, _ in invitations] == [("Sent", 1), ("Sent", 1)]
    assert all(sent is not None for *_, sent in invitations)

    outbox = isolated_env / "outbox"
    emails = sorted((outbox / "email").glob("*.eml"))
    assert [p.name for p in emails] == ["invite_1_1_email.eml", "invite_2_1_email.eml"]
    message = email.message_from_bytes(emails[0].read_bytes())
    assert message["To"] == "client1@example.org"
    assert "invites you" in message["Subject"]
    assert "TestB Example" in message.get_payload(decode=True).decode()
    text = json.loads(next((outbox / "sms").glob("*.json")).read_text())
    assert text["to"] == "+14155550001"


def test_limit_and_batches(db: Engine, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENSLOTS_DISPATCH_BATCH_SIZE", "2")
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in range(1, 6)]))
    assert dispatch_outbox.fn(limit=3).sent == 3
    assert dispatch_outbox.fn().sent == 2


def test_opt_out_after_queueing_cancels_the_message(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert().values(provider_id=1, channel="sms", address="+14155550001")
        )
    counts = dispatch_outbox.fn()
    assert (counts.sent, counts.cancelled) == (0, 2)  # every channel, not only SMS
    assert set(statuses(db).values()) == {"cancelled"}


def test_a_lease_that_expired_mid_send_becomes_unknown_not_resent(
    db: Engine, tmp_path: Path
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with db.begin() as conn:  # a worker claimed it, then died before recording the outcome
        conn.execute(update(OutboxMessage).values(status="sending", lease_expires_at=past))
    counts = dispatch_outbox.fn()
    assert (counts.expired_leases, counts.sent) == (1, 0)
    assert statuses(db) == {"invite:1:1:email": "unknown"}


def test_a_refused_send_stays_failed_and_no_later_dispatch_retries_it(
    db: Engine, tmp_path: Path, monkeypatch
) -> None:
    """What the code does today: `failed` is final for dispatch (it claims `pending` only), so
    the message is not sent even once the outbox is writable again; nothing retries it."""
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("OPENSLOTS_OUTBOX_DIR", str(blocker))
    counts = dispatch_outbox.fn()
    assert (counts.claimed, counts.sent, counts.failed) == (1, 0, 1)

    writable = tmp_path / "outbox"
    monkeypatch.setenv("OPENSLOTS_OUTBOX_DIR", str(writable))
    again = dispatch_outbox.fn()
    assert (again.claimed, again.sent, again.failed) == (0, 0, 0)
    with db.connect() as conn:
        status, attempts, error = conn.execute(
            select(OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.last_error)
        ).one()
        invitation = conn.execute(select(Invitation.status)).scalar_one()
    assert (status, attempts) == ("failed", 1) and "not writable" in error
    assert invitation == "Queued"  # never reached the patient
    assert not list(writable.rglob("*.eml"))
