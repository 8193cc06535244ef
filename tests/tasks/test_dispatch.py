"""Dispatch on SQLite and PostgreSQL with the file backends: intents materialised once, each
message sent once, outcomes and leases recorded (the loopback SMTP / Twilio cases are in
test_dispatch_servers.py)."""

from __future__ import annotations

import datetime as dt
import email
import json
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, func, select, update

from openslots.connectors.database import outbox as repo
from openslots.connectors.database.models import Client, Invitation, OptOut, OutboxMessage
from openslots.domain.clock import frozen_clock
from openslots.domain.tokens import read_token
from openslots.resources import resources
from openslots.tasks.dispatch import dispatch_outbox, materialise_intents
from tests.factories import person, roster_file
from tests.tasks._dispatch import at_once, dispatch_now
from tests.tasks.test_roster_import import run_import

# Noon in New York: outside the default SMS quiet hours.
NOON = dt.datetime(2030, 3, 5, 17, 0, tzinfo=dt.UTC)


def statuses(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        rows = conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)).all()
    return {key: str(status) for key, status in rows}


def outbox_count(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(OutboxMessage)).scalar_one())


def read_email(path: Path) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(path.read_bytes(), policy=policy.default))


def test_every_message_is_sent_once_and_invitations_show_sent(
    db: Engine, tmp_path: Path, isolated_env: Path
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1), person(2, mobile_phone="")]))
    assert outbox_count(db) == 0  # the import records intents only
    first = dispatch_now()
    second = dispatch_now()
    assert first.materialised == 3
    assert (first.claimed, first.sent, first.by_channel) == (3, 3, {"email": 2, "sms": 1})
    assert (second.materialised, second.claimed, second.sent) == (0, 0, 0)
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
    message = read_email(emails[0])
    assert message["To"] == "client1@example.org"
    assert "invites you" in message["Subject"]
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    assert "TestB Example" in text
    sms = json.loads(next((outbox / "sms").glob("*.json")).read_text())
    assert sms["to"] == "+14155550001" and sms["body"].endswith("Reply STOP to opt out.")

    # The unsubscribe link names the message, in the text, the HTML and List-Unsubscribe.
    url = message["List-Unsubscribe"].strip("<>")
    assert url in text and url in html and message["List-Unsubscribe-Post"]
    assert url.startswith("http://127.0.0.1:8000/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    with db.connect() as conn:
        outbox_id = conn.execute(
            select(OutboxMessage.id).where(OutboxMessage.idempotency_key == "invite:1:1:email")
        ).scalar_one()
    subject = read_token(resources().secret_key(), token, "unsubscribe", dt.datetime.now(dt.UTC))
    assert subject == str(outbox_id)


def test_a_dependent_is_invited_through_the_guardian(db: Engine, tmp_path: Path) -> None:
    header = [
        "Client ID",
        "First Name",
        "Last Name",
        "Date of Birth",
        "Email",
        "Mobile Phone",
        "Guardian First Name",
        "Guardian Last Name",
    ]
    rows = [[*person(1, mobile_phone=""), "Gina", "Guardian"]]
    run_import(roster_file(tmp_path / "r.csv", rows, header=header))
    assert dispatch_now().sent == 1
    message = read_email(next((tmp_path / "home" / "outbox" / "email").glob("*.eml")))
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and "Gina Guardian" in body.get_content()


def test_limit_and_batches(db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSLOTS_DISPATCH_BATCH_SIZE", "2")
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in range(1, 6)]))
    assert dispatch_now(limit=3).sent == 3
    assert dispatch_now().sent == 2


def test_an_opted_out_contact_gets_no_message_at_all(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1), person(2)]))
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert().values(provider_id=1, channel="sms", address="+14155550001")
        )
    counts = dispatch_now()
    assert (counts.materialised, counts.sent) == (2, 2)  # person 2 only, email and text
    assert set(statuses(db)) == {"invite:2:1:email", "invite:2:1:sms"}


def test_opt_out_between_queue_and_send_cancels_the_messages(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    assert materialise_intents.fn() == 2
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert().values(provider_id=1, channel="sms", address="+14155550001")
        )
    counts = dispatch_outbox.fn()
    assert (counts.sent, counts.cancelled) == (0, 2)  # every channel, not only SMS
    assert set(statuses(db).values()) == {"cancelled"}
    assert not list((tmp_path / "home" / "outbox").rglob("*.*"))


def test_an_invitation_connected_before_send_is_cancelled(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    materialise_intents.fn()
    with db.begin() as conn:
        conn.execute(update(Invitation).values(status="Connected"))
    counts = dispatch_outbox.fn()
    assert (counts.sent, counts.cancelled) == (0, 1)
    with db.connect() as conn:
        reason = conn.execute(select(OutboxMessage.last_error)).scalar_one()
    assert reason == "invitation is Connected"


def test_intents_of_forbidden_statuses_are_not_materialised(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1), person(2), person(3)]))
    with db.begin() as conn:
        conn.execute(update(Invitation).where(Invitation.id == 1).values(status="New"))
        conn.execute(update(Invitation).where(Invitation.id == 2).values(status="Opted-Out"))
    assert materialise_intents.fn() == 2
    assert set(statuses(db)) == {"invite:3:1:email", "invite:3:1:sms"}


def test_existing_pending_rows_of_an_old_database_are_sent(db: Engine, tmp_path: Path) -> None:
    """A database migrated with pending outbox rows (attempt == messages_attempt) sends them."""
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    with db.begin() as conn:
        conn.execute(
            OutboxMessage.__table__.insert().values(
                idempotency_key="invite:1:1:email",
                kind="invitation",
                channel="email",
                invitation_id=1,
                status="pending",
                attempts=0,
            )
        )
        conn.execute(update(Invitation).values(messages_attempt=1))
    counts = dispatch_now()
    assert (counts.materialised, counts.sent) == (0, 1)


def test_two_materialisations_at_once_create_each_message_once(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(n) for n in range(1, 41)]))
    written = at_once(materialise_intents.fn)
    assert sum(written) == outbox_count(db) == 80
    with db.connect() as conn:
        owed = conn.execute(
            select(func.count()).where(Invitation.messages_attempt < Invitation.attempt)
        ).scalar_one()
    assert owed == 0


def test_a_refused_send_is_retried_after_its_backoff(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("OPENSLOTS_OUTBOX_DIR", str(blocker))
    with frozen_clock(NOON) as clock:
        counts = dispatch_now()
        assert (counts.claimed, counts.sent, counts.failed) == (1, 0, 1)
        with db.connect() as conn:
            status, attempts, error, retry_at = conn.execute(
                select(
                    OutboxMessage.status,
                    OutboxMessage.attempts,
                    OutboxMessage.last_error,
                    OutboxMessage.next_attempt_at,
                )
            ).one()
        assert (status, attempts) == ("failed", 1) and "not writable" in error
        # base 30 s x jitter 0.75-1.25
        assert dt.timedelta(seconds=22) <= retry_at.replace(tzinfo=dt.UTC) - NOON
        assert retry_at.replace(tzinfo=dt.UTC) - NOON <= dt.timedelta(seconds=38)

        writable = tmp_path / "outbox"
        monkeypatch.setenv("OPENSLOTS_OUTBOX_DIR", str(writable))
        assert dispatch_now().claimed == 0  # not before its time
        clock.advance(dt.timedelta(seconds=40))
        again = dispatch_now()
    assert (again.claimed, again.sent) == (1, 1)
    assert len(list(writable.rglob("*.eml"))) == 1
    with db.connect() as conn:
        assert conn.execute(select(Invitation.status)).scalar_one() == "Sent"


def test_retries_exhausted_make_the_message_dead(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("OPENSLOTS_OUTBOX_DIR", str(blocker))
    monkeypatch.setenv("OPENSLOTS_DISPATCH_MAX_ATTEMPTS", "2")
    with frozen_clock(NOON) as clock:
        assert dispatch_now().failed == 1
        clock.advance(dt.timedelta(hours=1))
        assert dispatch_now().dead == 1
        clock.advance(dt.timedelta(days=2))
        assert dispatch_now().claimed == 0
    with db.connect() as conn:
        status, error = conn.execute(select(OutboxMessage.status, OutboxMessage.last_error)).one()
    assert status == "dead" and error.startswith("retries exhausted")


def test_a_dead_workers_unstarted_messages_return_and_a_started_file_is_resolved(
    db: Engine, tmp_path: Path, isolated_env: Path
) -> None:
    """File backend: the outcome of a started send is the file, so nothing becomes unknown."""
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in (1, 2, 3)]))
    materialise_intents.fn()
    lease = resources().settings.lease_seconds
    with frozen_clock(NOON) as clock:
        with db.begin() as conn:  # worker A claims all three, starts two, writes one file
            ids = repo.claim(conn, 10, lease, worker_id="worker-a", now=NOON)
            assert repo.mark_started(conn, ids[0], "worker-a", NOON)
            assert repo.mark_started(conn, ids[1], "worker-a", NOON)
        written = isolated_env / "outbox" / "email" / "invite_1_1_email.eml"
        written.parent.mkdir(parents=True)
        written.write_bytes(b"Subject: written before the worker died\n\nx\n")
        clock.advance(dt.timedelta(seconds=lease + 1))
        counts = dispatch_outbox.fn()
    # The written one is sent; the started-but-unwritten one and the unstarted one go back.
    assert (counts.expired_leases, counts.returned_to_pending, counts.unknown) == (3, 2, 0)
    assert (counts.claimed, counts.sent) == (2, 2)
    assert set(statuses(db).values()) == {"sent"}
    assert written.read_bytes().startswith(b"Subject: written before")  # not sent again


def test_a_live_lease_is_never_taken(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in (1, 2)]))
    materialise_intents.fn()
    lease = resources().settings.lease_seconds
    with frozen_clock(NOON) as clock:
        with db.begin() as conn:
            ids = repo.claim(conn, 10, lease, worker_id="worker-a", now=NOON)
            assert repo.mark_started(conn, ids[0], "worker-a", NOON)
        # Worker A's heartbeat renews before the lease runs out; B comes after the first lease.
        clock.advance(dt.timedelta(seconds=lease * 2 / 3))
        with db.begin() as conn:
            assert repo.renew_leases(conn, "worker-a", clock.now() + dt.timedelta(seconds=lease))
        clock.advance(dt.timedelta(seconds=lease * 2 / 3))
        counts = dispatch_outbox.fn()
        assert (counts.expired_leases, counts.claimed, counts.sent) == (0, 0, 0)
        with db.begin() as conn:  # worker B cannot mark A's messages
            assert not repo.record_outcome(conn, ids[0], "unknown", "x", worker_id="worker-b")
            assert repo.record_sent(conn, ids, worker_id="worker-b") == 0
            assert repo.record_sent(conn, [ids[0]], worker_id="worker-a") == 1
    assert statuses(db) == {"invite:1:1:email": "sent", "invite:2:1:email": "sending"}


def test_a_worker_that_lost_its_lease_marks_nothing(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1, mobile_phone="")]))
    materialise_intents.fn()
    with frozen_clock(NOON) as clock:
        with db.begin() as conn:
            [outbox_id] = repo.claim(conn, 10, 60, worker_id="worker-a", now=NOON)
        clock.advance(dt.timedelta(seconds=61))
        assert dispatch_outbox.fn().sent == 1  # B recovered the unstarted message and sent it
        with db.begin() as conn:
            assert not repo.mark_started(conn, outbox_id, "worker-a", clock.now())
            assert not repo.record_outcome(conn, outbox_id, "failed", "x", worker_id="worker-a")
    assert statuses(db) == {"invite:1:1:email": "sent"}


def test_quiet_hours_hold_texts_until_the_morning(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_SMS_QUIET_HOURS", "21:00-08:00")
    monkeypatch.setenv("OPENSLOTS_DEFAULT_TIMEZONE", "America/New_York")
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    evening = dt.datetime(2030, 3, 6, 3, 0, tzinfo=dt.UTC)  # 22:00 EST on 5 March
    with frozen_clock(evening) as clock:
        night = dispatch_now()
        assert night.by_channel == {"email": 1}  # emails are not held
        assert statuses(db)["invite:1:1:sms"] == "pending"
        clock.set(dt.datetime(2030, 3, 6, 12, 59, tzinfo=dt.UTC))  # 07:59 EST
        assert dispatch_now().sent == 0
        clock.set(dt.datetime(2030, 3, 6, 13, 0, tzinfo=dt.UTC))  # 08:00 EST
        assert dispatch_now().by_channel == {"sms": 1}
    assert set(statuses(db).values()) == {"sent"}


def test_a_bad_template_override_fails_the_run_before_anything_is_claimed(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openslots.errors import ConfigurationError

    overrides = tmp_path / "templates" / "invitation"
    overrides.mkdir(parents=True)
    (overrides / "subject.txt").write_text("Hello {{ first_name }\n")
    monkeypatch.setenv("OPENSLOTS_TEMPLATES_DIR", str(tmp_path / "templates"))
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    materialise_intents.fn()
    with pytest.raises(ConfigurationError, match=r"invitation/subject\.txt"):
        dispatch_outbox.fn()
    assert set(statuses(db).values()) == {"pending"}


def test_a_client_who_lost_the_address_is_cancelled(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    materialise_intents.fn()
    with db.begin() as conn:
        conn.execute(update(Client).values(mobile_phone=None))
    counts = dispatch_outbox.fn()
    assert (counts.sent, counts.cancelled) == (1, 1)


def test_the_email_rate_limit_spaces_the_sends(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_EMAIL_PER_SECOND", "10")
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in range(1, 16)]))
    started = time.monotonic()
    assert dispatch_now().sent == 15
    # 10 at once (a second's worth), then the other 5 one tenth of a second apart.
    assert time.monotonic() - started >= 0.45
