"""Opt-outs that come from our messages: the unsubscribe link's token and an inbound STOP or
START, through the CLI and the API, on both databases; each audited with its source and never
echoing the address."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from openslots import api
from openslots.cli import app
from openslots.connectors.database.models import Channel, Invitation, OutboxStatus
from openslots.domain.clock import frozen_clock
from openslots.domain.statuses import InvitationStatus
from openslots.domain.tokens import make_token
from openslots.errors import InvalidToken
from openslots.resources import resources
from tests.cli.test_outbox_admin import EMAIL, PHI, PHONE, message, patient, row, run

runner = CliRunner()
OUR_NUMBER = "+14155550100"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def token_for(outbox_id: int, expires: dt.timedelta = dt.timedelta(days=365), **kw: str) -> str:
    now = resources().now()
    return make_token(
        resources().secret_key(), kw.get("purpose", "unsubscribe"), outbox_id, now + expires
    )


def invitation_status(engine: Engine, invitation_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                select(Invitation.status).where(Invitation.id == invitation_id)
            ).scalar_one()
        )


def audit_actors(invitation_id: int) -> list[tuple[str, str | None]]:
    code, events = run("audit", "--invitation", str(invitation_id))
    assert code == 0 and isinstance(events, list)
    return [(e["actor"], e["to"]) for e in events]


def test_unsubscribe_link_opts_out_once_and_says_so_the_second_time(db: Engine) -> None:
    p = patient(db)
    sent = message(db, p.invitation_id, OutboxStatus.SENT)
    token = token_for(sent)

    result = runner.invoke(app, ["unsubscribe", token, "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "action": "opted_out",
        "provider": "Dr. Ops",
        "channel": "email",
        "invitations_changed": 1,
    }
    assert invitation_status(db, p.invitation_id) == InvitationStatus.OPTED_OUT
    assert audit_actors(p.invitation_id) == [("unsubscribe", InvitationStatus.OPTED_OUT.value)]

    again = runner.invoke(app, ["unsubscribe", token])
    assert again.exit_code == 0 and "already unsubscribed" in again.output
    assert api.unsubscribe(token)["action"] == "already_opted_out"
    assert len(audit_actors(p.invitation_id)) == 1
    for output in (result.output, again.output):
        assert not any(value in output for value in PHI)


def test_unsubscribe_from_a_text_opts_out_the_phone(db: Engine) -> None:
    p = patient(db, email=None)
    text = message(db, p.invitation_id, OutboxStatus.SENT, Channel.SMS)
    result = api.unsubscribe(token_for(text))
    assert result == {
        "action": "opted_out",
        "provider": "Dr. Ops",
        "channel": "sms",
        "invitations_changed": 1,
    }
    code, events = run("audit", "--invitation", str(p.invitation_id))
    assert code == 0 and events[0]["actor"] == "unsubscribe"


def test_bad_tokens_are_refused_with_their_reason(db: Engine) -> None:
    p = patient(db)
    sent = message(db, p.invitation_id, OutboxStatus.SENT)
    with frozen_clock(T0) as clock:
        expiring = token_for(sent, dt.timedelta(hours=1))
        clock.advance(dt.timedelta(hours=2))
        code, error = run("unsubscribe", expiring)
        assert code == 1 and error == {"error": "invalid token: expired"}

    good = token_for(sent)
    payload, signature = good.split(".")
    forged = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert run("unsubscribe", forged) == (1, {"error": "invalid token: tampered"})
    assert run("unsubscribe", "not-a-token") == (1, {"error": "invalid token: malformed"})
    claim = token_for(sent, purpose="claim")
    assert run("unsubscribe", claim) == (1, {"error": "invalid token: wrong-purpose"})
    code, error = run("unsubscribe", token_for(9999))
    assert code == 1 and "no longer exists" in error["error"]
    human = runner.invoke(app, ["unsubscribe", forged])
    assert human.exit_code == 1 and "Traceback" not in human.output
    with pytest.raises(InvalidToken) as refused:
        api.unsubscribe(forged)
    assert refused.value.reason == "tampered"
    assert invitation_status(db, p.invitation_id) == InvitationStatus.QUEUED


def inbound(body: str, to: str = OUR_NUMBER, sender: str = "(415) 555-0123") -> tuple[int, object]:
    return run("sms", "inbound", "--from", sender, "--to", to, "--body", body)


def test_inbound_stop_and_start_for_every_provider_on_our_number(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_TWILIO_FROM", "(415) 555-0100")
    first = patient(db, "Dr. A")
    second = patient(db, "Dr. B", ref="B1", email="other@example.org")
    pending = message(db, second.invitation_id, OutboxStatus.PENDING, Channel.SMS)

    assert inbound("hello, is this the clinic?") == (
        0,
        {"action": "ignored", "providers": 0, "invitations_changed": 0},
    )
    assert inbound(" Stop ") == (
        0,
        {"action": "opted_out", "providers": 2, "invitations_changed": 2},
    )
    for p in (first, second):
        assert invitation_status(db, p.invitation_id) == InvitationStatus.OPTED_OUT
        assert audit_actors(p.invitation_id) == [("sms-stop", InvitationStatus.OPTED_OUT.value)]
    code, counts = run("outbox", "status")  # the unsent text is cancelled, not sent later
    assert code == 0 and counts == {"sms:cancelled": 1}
    assert row(db, pending).status == OutboxStatus.CANCELLED
    assert inbound("QUIT") == (0, {"action": "opted_out", "providers": 2, "invitations_changed": 0})

    assert inbound("unstop") == (
        0,
        {"action": "opted_in", "providers": 2, "invitations_changed": 2},
    )
    for p in (first, second):
        assert invitation_status(db, p.invitation_id) == InvitationStatus.QUEUED
        assert audit_actors(p.invitation_id)[-1] == ("sms-start", InvitationStatus.QUEUED.value)
    assert inbound("START") == (0, {"action": "opted_in", "providers": 0, "invitations_changed": 0})

    # A STOP opts out the phone, never the email of the same patient.
    assert api.sms_inbound(PHONE, OUR_NUMBER, "END")["action"] == "opted_out"
    code, error = run("opt-in", "--provider", "Dr. A", "--email", EMAIL)
    assert code == 1 and "has not opted out" in error["error"]


def test_inbound_to_a_number_that_is_not_ours_is_refused(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = patient(db)
    code, error = inbound("STOP")  # no sending number configured at all
    assert code == 1 and "not one of our sending numbers" in error["error"]
    monkeypatch.setenv("OPENSLOTS_TWILIO_FROM", OUR_NUMBER)
    result = runner.invoke(
        app, ["sms", "inbound", "--from", PHONE, "--to", "+14155550199", "--body", "STOP"]
    )
    assert result.exit_code == 1 and "not one of our sending numbers" in result.output
    assert PHONE not in result.output and "Traceback" not in result.output
    assert invitation_status(db, p.invitation_id) == InvitationStatus.QUEUED
    assert runner.invoke(app, ["sms", "inbound", "--from", PHONE, "--body", "STOP"]).exit_code == 2
    code, error = inbound("STOP", sender="not a number")
    assert code == 1 and error == {"error": "the sender (from) is not a phone number"}


def test_with_a_messaging_service_the_service_sid_is_our_number(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_TWILIO_MESSAGING_SERVICE_SID", "MG0123456789abcdef")
    p = patient(db)
    assert inbound("STOP", to=OUR_NUMBER)[0] == 1
    assert inbound("STOP", to="MG0123456789abcdef") == (
        0,
        {"action": "opted_out", "providers": 1, "invitations_changed": 1},
    )
    assert invitation_status(db, p.invitation_id) == InvitationStatus.OPTED_OUT
