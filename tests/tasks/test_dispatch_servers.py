"""Dispatch against real servers on loopback: aiosmtpd for email, the Twilio Messages API fake
for texts. What the servers received is the proof: each recipient exactly once, or the message
listed with its reason."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from openslots.connectors.database import outbox as repo
from openslots.connectors.database.models import AuditEvent, Client, Invitation, OptOut
from openslots.connectors.database.models import OutboxMessage as Outbox
from openslots.domain.clock import frozen_clock
from openslots.resources import resources
from openslots.tasks.dispatch import DispatchCounts, dispatch_outbox, materialise_intents
from tests.factories import person, roster_file
from tests.smtp_server import DROP, SmtpSink
from tests.tasks._dispatch import dispatch_now, use_smtp, use_twilio
from tests.tasks.test_dispatch import NOON, statuses
from tests.tasks.test_roster_import import run_import
from tests.twilio_server import TwilioServer


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        use_smtp(monkeypatch, running)
        yield running


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioServer]:
    with TwilioServer() as running:
        use_twilio(monkeypatch, running)
        yield running


def email_only(count: int) -> list[list[str]]:
    return [person(n, mobile_phone="") for n in range(1, count + 1)]


def outbox_rows(db: Engine) -> dict[str, tuple[str, str | None]]:
    with db.connect() as conn:
        rows = conn.execute(select(Outbox.idempotency_key, Outbox.status, Outbox.last_error))
        return {key: (str(status), error) for key, status, error in rows}


def test_a_421_is_retried_after_the_backoff_and_everyone_gets_exactly_one(
    db: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    run_import(roster_file(tmp_path / "r.csv", email_only(100)))
    sink.fail_data("client38@example.org", "421 4.3.2 Service shutting down")
    with frozen_clock(NOON) as clock:
        first = dispatch_now()
        assert (first.claimed, first.sent, first.failed) == (100, 99, 1)
        assert outbox_rows(db)["invite:38:1:email"][0] == "failed"
        sink.handler.data_rules.clear()  # the relay is back
        assert dispatch_now().claimed == 0  # not before the backoff
        clock.advance(dt.timedelta(minutes=1))
        second = dispatch_now()
    assert (second.claimed, second.sent) == (1, 1)
    assert Counter(sink.recipients()) == {f"client{n}@example.org": 1 for n in range(1, 101)}
    assert sink.connections <= resources().settings.dispatch_connections + 2  # reused
    assert set(statuses(db).values()) == {"sent"}


def test_a_connection_dropped_after_the_data_is_unknown_and_never_resent(
    db: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    run_import(roster_file(tmp_path / "r.csv", email_only(100)))
    sink.fail_data("client50@example.org", DROP)
    counts = dispatch_now()
    assert (counts.sent, counts.unknown) == (99, 1)
    assert dispatch_now().claimed == 0
    status, reason = outbox_rows(db)["invite:50:1:email"]
    assert status == "unknown" and reason is not None and "no reply" in reason
    assert "client50" not in reason
    assert Counter(sink.recipients()) == {
        f"client{n}@example.org": 1 for n in range(1, 101) if n != 50
    }
    assert len(sink.dropped) == 1


def test_an_opt_out_between_queue_and_send_sends_nothing(
    db: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    run_import(roster_file(tmp_path / "r.csv", email_only(2)))
    materialise_intents.fn()
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert().values(
                provider_id=1, channel="email", address="client1@example.org"
            )
        )
    counts = dispatch_outbox.fn()
    assert (counts.sent, counts.cancelled) == (1, 1)
    assert sink.recipients() == ["client2@example.org"]
    assert outbox_rows(db)["invite:1:1:email"] == ("cancelled", "recipient opted out")


def test_header_injection_in_a_name_is_dead_and_nothing_is_sent(
    db: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    run_import(roster_file(tmp_path / "r.csv", email_only(2)))
    with db.begin() as conn:  # a name that reached the database by another road than the roster
        conn.execute(
            update(Client)
            .where(Client.client_ref == "00001")
            .values(first_name="Eve\r\nBcc: victim@example.org")
        )
    counts = dispatch_now()
    assert (counts.sent, counts.dead) == (1, 1)
    status, reason = outbox_rows(db)["invite:1:1:email"]
    assert status == "dead" and reason is not None and "header injection" in reason
    assert sink.recipients() == ["client2@example.org"]
    assert b"victim" not in b"".join(item.content for item in sink.received)


def test_twilio_429_is_retried_after_retry_after_500_is_unknown_21610_opts_out(
    db: Engine, tmp_path: Path, twilio: TwilioServer
) -> None:
    rows = [person(n) for n in (1, 2, 3, 4)]
    run_import(roster_file(tmp_path / "r.csv", rows))
    # Invitation ids follow the database's join order, not the file's: find each by phone.
    with db.connect() as conn:
        by_phone = dict(
            conn.execute(
                select(Client.mobile_phone, Invitation.id).join(
                    Invitation, Invitation.client_id == Client.id
                )
            ).all()
        )
    sms = {n: f"invite:{by_phone[f'+1415555000{n}']}:1:sms" for n in (1, 2, 3)}
    twilio.behave("+14155550001", "429")
    twilio.behave("+14155550002", "500")
    twilio.behave("+14155550003", "21610")
    with frozen_clock(NOON) as clock:
        first = dispatch_now()
        assert first.by_channel == {"email": 4, "sms": 1}
        assert (first.failed, first.unknown, first.dead) == (1, 1, 1)
        rows_now = outbox_rows(db)
        assert rows_now[sms[1]][0] == "failed"
        assert rows_now[sms[2]][0] == "unknown"
        assert rows_now[sms[3]][0] == "dead"
        with db.connect() as conn:
            retry_at = conn.execute(
                select(Outbox.next_attempt_at).where(Outbox.idempotency_key == sms[1])
            ).scalar_one()
        assert retry_at.replace(tzinfo=dt.UTC) == NOON + dt.timedelta(seconds=7)  # Retry-After
        twilio.behave("+14155550001", "ok")
        clock.advance(dt.timedelta(seconds=8))
        second = dispatch_now()
    assert (second.claimed, second.sent) == (1, 1)  # the unknown one is not retried
    assert Counter(sms.to for sms in twilio.received) == {
        "+14155550001": 1,
        "+14155550002": 1,  # the 500: the provider has it, we did not send it again
        "+14155550004": 1,
    }
    with db.connect() as conn:
        opted = conn.execute(select(OptOut.channel, OptOut.address)).all()
        status = conn.execute(
            select(Invitation.status).where(Invitation.id == by_phone["+14155550003"])
        ).scalar_one()
        actors = set(conn.execute(select(AuditEvent.actor)).scalars())
    assert [tuple(row) for row in opted] == [("sms", "+14155550003")]
    assert status == "Opted-Out" and "sms-provider" in actors


def test_a_dead_worker_leaves_one_unknown_and_another_sends_the_rest_once(
    db: Engine, tmp_path: Path, sink: SmtpSink
) -> None:
    """Worker A claims 10 and hands one to its sender, then dies (no renewal); after the lease,
    worker B marks that one unknown and sends the 9 others exactly once."""
    run_import(roster_file(tmp_path / "r.csv", email_only(10)))
    materialise_intents.fn()
    lease = resources().settings.lease_seconds
    with frozen_clock(NOON) as clock:
        with db.begin() as conn:
            ids = repo.claim(conn, 10, lease, worker_id="worker-a", now=NOON)
            assert len(ids) == 10 and repo.mark_started(conn, ids[3], "worker-a", NOON)
        clock.advance(dt.timedelta(seconds=lease - 1))
        assert dispatch_outbox.fn().claimed == 0  # A's lease is still live
        clock.advance(dt.timedelta(seconds=2))
        counts = dispatch_outbox.fn()
    assert (counts.expired_leases, counts.returned_to_pending, counts.unknown) == (10, 9, 1)
    assert (counts.claimed, counts.sent) == (9, 9)
    assert outbox_rows(db)["invite:4:1:email"] == ("unknown", "lease expired during send")
    assert Counter(sink.recipients()) == {
        f"client{n}@example.org": 1 for n in range(1, 11) if n != 4
    }


def test_a_working_worker_renews_its_lease_and_keeps_its_messages(
    db: Engine, tmp_path: Path, twilio: TwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real time: a 1 s lease, a text whose API answers after 2.5 s; a second worker starting
    meanwhile finds the lease renewed by the first one's heartbeat and takes nothing."""
    monkeypatch.setenv("OPENSLOTS_LEASE_SECONDS", "1")
    monkeypatch.setenv("OPENSLOTS_TWILIO_TIMEOUT_SECONDS", "10")
    twilio.state.slow_seconds = 2.5
    twilio.behave("+14155550001", "slow")
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    materialise_intents.fn()
    results: dict[str, object] = {}
    worker_a = threading.Thread(target=lambda: results.update(a=dispatch_outbox.fn()))
    worker_a.start()
    time.sleep(1.6)
    second = dispatch_outbox.fn()
    worker_a.join()
    first = results["a"]
    assert isinstance(first, DispatchCounts)
    assert (second.expired_leases, second.claimed) == (0, 0)
    assert (first.claimed, first.sent) == (2, 2)
    assert [sms.to for sms in twilio.received] == ["+14155550001"]
    assert set(statuses(db).values()) == {"sent"}


def test_a_feed_patient_with_a_phone_only_is_invited_by_text_shows_sent_and_can_be_resent(
    db: Engine, twilio: TwilioServer
) -> None:
    """Issue 8.6 end to end: an ADT patient without email, a text through the Twilio API on
    loopback, Sent, a resend with the next attempt's key, and texts that never mention an email."""
    from openslots.api import resend_invitation
    from openslots.tasks.hl7 import ingest_stored
    from openslots.tasks.hl7_receive import StoreThenAck
    from tests.hl7_messages import CERNER_A08

    (reply,) = StoreThenAck(db).handle([CERNER_A08.encode()])
    assert b"MSA|AA" in reply.response
    assert ingest_stored.fn().applied == 1

    def invitation() -> tuple[str, int, int]:
        with db.connect() as conn:
            row = conn.execute(
                select(Invitation.status, Invitation.send_count, Invitation.attempt)
            ).one()
        return str(row.status), row.send_count, row.attempt

    assert invitation() == ("Queued", 0, 1)
    with frozen_clock(NOON) as clock:
        first = dispatch_now()
        assert first.by_channel == {"sms": 1}
        assert invitation() == ("Sent", 1, 1)
        assert resend_invitation(1, "desk") == "invite:1:2"
        clock.advance(dt.timedelta(days=1))
        second = dispatch_now()
    assert second.by_channel == {"sms": 1}
    assert invitation() == ("Sent", 2, 2)
    assert outbox_rows(db) == {"invite:1:1:sms": ("sent", None), "invite:1:2:sms": ("sent", None)}
    texts = [sms.body for sms in twilio.received]
    assert [sms.to for sms in twilio.received] == ["+12125550188"] * 2
    assert texts[1].startswith("Reminder:")
    assert all("email" not in text and "ask to connect" in text for text in texts)


def test_an_invitation_is_sent_by_whichever_message_goes_first_and_counts_one_send(
    db: Engine, tmp_path: Path, sink: SmtpSink, twilio: TwilioServer
) -> None:
    """Email refused for good, text delivered: the invitation is Sent, one send, not two."""
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    sink.fail_data("client1@example.org", "550 5.1.1 No such user")
    with frozen_clock(NOON):
        counts = dispatch_now()
    assert (counts.dead, counts.by_channel) == (1, {"sms": 1})
    with db.connect() as conn:
        row = conn.execute(select(Invitation.status, Invitation.send_count)).one()
    assert (str(row.status), row.send_count) == ("Sent", 1)
    assert "the email we have on file" in twilio.received[0].body
