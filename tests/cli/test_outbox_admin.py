"""`openslots outbox status|list|retry|resolve` on both databases: what an operator sees
(never a patient's value) and every transition they may make, audited, or refuse."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from openslots.api import audit_events
from openslots.cli import app
from openslots.connectors.database.models import (
    Channel,
    Client,
    Invitation,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
)
from openslots.connectors.database.providers import ensure_target
from openslots.domain.statuses import InvitationStatus

runner = CliRunner()

# A synthetic patient whose every value the operator's output must not show.
FIRST, LAST = "Zelda", "Quux"
EMAIL, PHONE = "zelda.quux@example.org", "+14155550123"
PHI = (FIRST, LAST, EMAIL, PHONE, PHONE[2:], "1981-02-03")


@dataclass(frozen=True)
class Patient:
    provider_id: int
    client_id: int
    invitation_id: int


def patient(
    engine: Engine,
    provider: str = "Dr. Ops",
    ref: str = "A1",
    email: str | None = EMAIL,
    phone: str | None = PHONE,
) -> Patient:
    """A provider's client with a Queued invitation (no outbox rows: tests add their own)."""
    with engine.begin() as conn:
        target = ensure_target(conn, provider, "Main", integrated=False, create=True)
        client_id = conn.execute(
            insert(Client)
            .values(
                provider_id=target.provider_id,
                client_ref=ref,
                first_name=FIRST,
                last_name=LAST,
                date_of_birth=dt.date(1981, 2, 3),
                email=email,
                mobile_phone=phone,
            )
            .returning(Client.id)
        ).scalar_one()
        invitation_id = conn.execute(
            insert(Invitation)
            .values(
                client_id=client_id,
                provider_id=target.provider_id,
                location_id=target.location_id,
                status=InvitationStatus.QUEUED,
            )
            .returning(Invitation.id)
        ).scalar_one()
    return Patient(target.provider_id, client_id, invitation_id)


def message(
    engine: Engine,
    invitation_id: int,
    status: OutboxStatus,
    channel: Channel = Channel.EMAIL,
    *,
    attempts: int = 1,
    last_error: str | None = None,
) -> int:
    """One outbox row in `status`, keyed as dispatch keys invitation messages."""
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(OutboxMessage)
                .values(
                    idempotency_key=f"invite:{invitation_id}:1:{channel}:{status}",
                    kind=OutboxKind.INVITATION,
                    channel=channel,
                    invitation_id=invitation_id,
                    status=status,
                    attempts=attempts,
                    last_error=last_error,
                    next_attempt_at=(
                        dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
                        if status is OutboxStatus.FAILED
                        else None
                    ),
                )
                .returning(OutboxMessage.id)
            ).scalar_one()
        )


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def row(engine: Engine, outbox_id: int) -> object:
    with engine.connect() as conn:
        return conn.execute(select(OutboxMessage).where(OutboxMessage.id == outbox_id)).one()


def test_status_keeps_its_json_and_list_shows_reasons_but_no_patient_data(db: Engine) -> None:
    p = patient(db)
    unknown = message(db, p.invitation_id, OutboxStatus.UNKNOWN, last_error="SMTP lost after DATA")
    dead = message(db, p.invitation_id, OutboxStatus.DEAD, Channel.SMS, last_error="twilio 21211")
    failed = message(db, p.invitation_id, OutboxStatus.FAILED, attempts=3, last_error="SMTP 421")
    message(db, p.invitation_id, OutboxStatus.SENT, Channel.SMS)

    code, counts = run("outbox", "status")
    assert code == 0
    assert counts == {"email:unknown": 1, "email:failed": 1, "sms:dead": 1, "sms:sent": 1}

    code, rows = run("outbox", "list")
    assert code == 0 and isinstance(rows, list)
    assert [(r["id"], r["state"], r["reason"]) for r in rows] == [
        (unknown, "unknown", "SMTP lost after DATA"),
        (dead, "dead", "twilio 21211"),
        (failed, "failed", "SMTP 421"),
    ]
    assert rows[2]["attempts"] == 3 and rows[2]["next_attempt_at"].startswith("2030-01-01")
    assert {r["invitation_id"] for r in rows} == {p.invitation_id}
    assert set(rows[0]) >= {"idempotency_key", "kind", "channel", "created_at"}
    code, only = run("outbox", "list", "--state", "dead")
    assert code == 0 and [r["id"] for r in only] == [dead]
    code, limited = run("outbox", "list", "--limit", "1")
    assert code == 0 and [r["id"] for r in limited] == [unknown]
    assert runner.invoke(app, ["outbox", "list", "--state", "sent"]).exit_code == 2

    for args in (["outbox", "list", "--json"], ["outbox", "list"], ["outbox", "status"]):
        shown = runner.invoke(app, args, terminal_width=300)
        assert shown.exit_code == 0
        for value in PHI:
            assert value not in shown.output, (args, value)
    human = runner.invoke(app, ["outbox", "list"]).output
    assert "SMTP 421" in human and "twilio 21211" in human


def test_retry_moves_failed_and_dead_to_pending_now_and_audits(db: Engine) -> None:
    p = patient(db)
    failed = message(db, p.invitation_id, OutboxStatus.FAILED, attempts=3, last_error="SMTP 421")
    other = message(db, p.invitation_id, OutboxStatus.FAILED, Channel.SMS, attempts=2)
    dead = message(db, p.invitation_id, OutboxStatus.DEAD, attempts=8, last_error="SMTP 550")
    sent = message(db, p.invitation_id, OutboxStatus.SENT, Channel.SMS)

    code, result = run("outbox", "retry", str(failed), "--actor", "ops", "--reason", "relay back")
    assert code == 0 and result == {"id": failed, "from": "failed", "to": "pending"}
    moved = row(db, failed)
    assert moved.status == OutboxStatus.PENDING and moved.next_attempt_at is None
    assert moved.attempts == 3
    code, events = run("audit", "--outbox", str(failed))
    assert code == 0 and isinstance(events, list)
    [event] = events
    assert (event["actor"], event["action"], event["from"], event["to"], event["reason"]) == (
        "ops",
        "retry",
        "failed",
        "pending",
        "relay back",
    )

    code, result = run("outbox", "retry", "--all-failed")
    assert code == 0 and result == {"retried": 1, "ids": [other]}
    assert row(db, dead).status == OutboxStatus.DEAD
    assert audit_events("outbox", other)[0]["actor"]  # the OS user by default

    code, result = run("outbox", "retry", str(dead), "--actor", "ops")
    assert code == 0 and result == {"id": dead, "from": "dead", "to": "pending"}
    assert row(db, dead).attempts == 8

    code, refused = run("outbox", "retry", str(sent))
    assert code == 1 and "is sent" in refused["error"]
    code, refused = run("outbox", "retry", "999")
    assert code == 1 and refused == {"error": "no outbox message 999"}
    assert runner.invoke(app, ["outbox", "retry"]).exit_code == 2
    assert runner.invoke(app, ["outbox", "retry", str(failed), "--all-failed"]).exit_code == 2
    assert audit_events("outbox", sent) == []


def test_resolve_sent_makes_the_invitation_sent_and_not_sent_requeues(db: Engine) -> None:
    p = patient(db)
    email = message(db, p.invitation_id, OutboxStatus.UNKNOWN, last_error="lost after DATA")
    text = message(db, p.invitation_id, OutboxStatus.UNKNOWN, Channel.SMS, attempts=1)

    code, result = run(
        "outbox", "resolve", str(email), "--sent", "--actor", "ops", "--reason", "relay log"
    )
    assert code == 0 and result == {"id": email, "from": "unknown", "to": "sent"}
    resolved = row(db, email)
    assert resolved.status == OutboxStatus.SENT and resolved.sent_at is not None
    with db.connect() as conn:
        invitation = conn.execute(
            select(Invitation.status, Invitation.send_count, Invitation.last_sent_at).where(
                Invitation.id == p.invitation_id
            )
        ).one()
    assert invitation.status == InvitationStatus.SENT and invitation.send_count == 1
    assert invitation.last_sent_at is not None

    code, result = run("outbox", "resolve", str(text), "--not-sent", "--actor", "ops")
    assert code == 0 and result == {"id": text, "from": "unknown", "to": "pending"}
    requeued = row(db, text)
    assert requeued.status == OutboxStatus.PENDING and requeued.attempts == 1

    assert [
        (e["actor"], e["action"], e["to"], e["reason"]) for e in audit_events("outbox", email)
    ] == [("ops", "resolve", "sent", "relay log")]
    assert [(e["from"], e["to"]) for e in audit_events("outbox", text)] == [("unknown", "pending")]

    # Only `unknown` is resolved: a sent or pending message is refused with its state.
    code, refused = run("outbox", "resolve", str(email), "--not-sent")
    assert code == 1 and "is sent: only unknown messages are resolved" in refused["error"]
    code, refused = run("outbox", "resolve", str(text), "--sent")
    assert code == 1 and "is pending" in refused["error"]
    code, refused = run("outbox", "resolve", "999", "--sent")
    assert code == 1 and refused == {"error": "no outbox message 999"}
    assert runner.invoke(app, ["outbox", "resolve", str(text)]).exit_code == 2
    assert runner.invoke(app, ["outbox", "resolve", "--sent"]).exit_code == 2
    assert len(audit_events("outbox", email)) == 1
    human = runner.invoke(app, ["outbox", "resolve", str(email), "--sent"])
    assert human.exit_code == 1 and "Traceback" not in human.output


def test_retry_of_an_unknown_message_points_to_resolve(db: Engine) -> None:
    p = patient(db)
    unknown = message(db, p.invitation_id, OutboxStatus.UNKNOWN)
    code, refused = run("outbox", "retry", str(unknown))
    assert code == 1 and "outbox resolve" in refused["error"]
    assert row(db, unknown).status == OutboxStatus.UNKNOWN
