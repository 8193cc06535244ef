"""TwilioSmsSender through the real `twilio` SDK against a loopback Messages API server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from openslots.connectors.sms import OutgoingSms, TwilioSmsSender, sms_sender
from openslots.domain.rendering import SMS_OPT_OUT
from openslots.errors import (
    ConfigurationError,
    RecipientOptedOut,
    SendOutcomeUnknown,
    SendRefused,
    SendRejected,
)
from openslots.settings import Settings
from tests.smtp_server import free_port
from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, TwilioServer

FROM = "+15005550006"
TO = "+15551230001"


@pytest.fixture
def server() -> Iterator[TwilioServer]:
    with TwilioServer() as running:
        yield running


def _settings(base_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "sms_backend": "twilio",
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_from": FROM,
        "twilio_api_base_url": base_url,
        "twilio_timeout_seconds": 2,
    }
    values.update(changes)
    return Settings(**values)


def _sender(server: TwilioServer, **changes: Any) -> TwilioSmsSender:
    sender = sms_sender(_settings(server.base_url, **changes))
    assert isinstance(sender, TwilioSmsSender)
    return sender


def _sms(n: int = 1, to: str = TO, body: str = "Dr. Lee has an open slot.") -> OutgoingSms:
    return OutgoingSms(key=f"offer:{n}:sms", to=to, body=body)


def test_sent_through_the_sdk_with_basic_auth_and_the_opt_out(server: TwilioServer) -> None:
    sender = _sender(server)
    for n in range(5):
        sender.send(_sms(n, to=f"+1555123000{n}"))
    assert [m.to for m in server.received] == [f"+1555123000{n}" for n in range(5)]
    first = server.received[0]
    assert first.account_sid == ACCOUNT_SID and first.from_ == FROM
    assert first.body == f"Dr. Lee has an open slot. {SMS_OPT_OUT}"
    assert first.messaging_service_sid is None


def test_messaging_service_instead_of_a_number(server: TwilioServer) -> None:
    sender = _sender(server, twilio_from=None, twilio_messaging_service_sid="MG" + "1" * 32)
    sender.send(_sms(body=f"Hello. {SMS_OPT_OUT}"))
    [message] = server.received
    assert message.from_ is None and message.messaging_service_sid == "MG" + "1" * 32
    assert message.body == f"Hello. {SMS_OPT_OUT}"  # not doubled


@pytest.mark.parametrize("status", ["429", "503"])
def test_throttled_is_refused_with_retry_after(server: TwilioServer, status: str) -> None:
    server.behave(TO, status)
    with pytest.raises(SendRefused) as caught:
        _sender(server).send(_sms())
    assert type(caught.value) is SendRefused and caught.value.transient
    assert caught.value.retry_after == 7.0 and status in caught.value.reason
    assert server.received == []


def test_503_without_retry_after_is_unknown(server: TwilioServer) -> None:
    server.behave(TO, "503")
    server.state.retry_after = ""
    with pytest.raises(SendOutcomeUnknown, match="HTTP 503"):
        _sender(server).send(_sms())


def test_server_error_is_unknown(server: TwilioServer) -> None:
    server.behave(TO, "500")
    with pytest.raises(SendOutcomeUnknown, match="HTTP 500"):
        _sender(server).send(_sms())
    assert len(server.received) == 1 and server.requests == 1  # the provider got it, once


def test_unsubscribed_recipient(server: TwilioServer) -> None:
    server.behave(TO, "21610")
    with pytest.raises(RecipientOptedOut) as caught:
        _sender(server).send(_sms())
    assert caught.value.code == 21610 and isinstance(caught.value, SendRejected)
    assert TO not in str(caught.value)


@pytest.mark.parametrize("code", ["21211", "21614"])
def test_invalid_number_is_rejected(server: TwilioServer, code: str) -> None:
    server.behave(TO, code)
    with pytest.raises(SendRejected) as caught:
        _sender(server).send(_sms())
    assert type(caught.value) is SendRejected and caught.value.code == int(code)
    assert TO not in str(caught.value)


def test_timeout_after_the_request_went_out_is_unknown(server: TwilioServer) -> None:
    server.behave(TO, "slow")
    server.state.slow_seconds = 1.5
    with pytest.raises(SendOutcomeUnknown, match="ReadTimeout"):
        _sender(server, twilio_timeout_seconds=0.3).send(_sms())
    assert len(server.received) == 1 and server.requests == 1  # not retried


def test_connection_dropped_without_answer_is_unknown(server: TwilioServer) -> None:
    server.behave(TO, "drop")
    with pytest.raises(SendOutcomeUnknown):
        _sender(server).send(_sms())
    assert server.requests == 1


def test_connection_refused_is_a_transient_refusal() -> None:
    sender = TwilioSmsSender(_settings(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(SendRefused) as caught:
        sender.send(_sms())
    assert type(caught.value) is SendRefused and caught.value.transient


def test_wrong_credentials_are_refused_not_dead(
    server: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + AUTH_TOKEN
    settings = _settings(server.base_url, twilio_auth_token=wrong)
    with pytest.raises(SendRefused) as caught:
        TwilioSmsSender(settings).send(_sms())
    assert type(caught.value) is SendRefused and "401" in caught.value.reason
    shown = [str(caught.value), repr(settings), repr(TwilioSmsSender(settings)), caplog.text]
    assert not [text for text in shown if wrong in text or AUTH_TOKEN in text]


def test_not_e164_is_rejected_before_any_request(server: TwilioServer) -> None:
    with pytest.raises(SendRejected):
        _sender(server).send(_sms(to="5551230001"))
    assert server.requests == 0


def test_twilio_environment_variables_do_not_redirect(
    server: TwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    _sender(server).send(_sms())
    assert len(server.received) == 1


def test_missing_settings_name_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="OPENSLOTS_TWILIO_AUTH_TOKEN"):
        sms_sender(Settings(sms_backend="twilio", twilio_account_sid=ACCOUNT_SID))
    with pytest.raises(ConfigurationError, match="OPENSLOTS_TWILIO_FROM"):
        sms_sender(
            Settings(
                sms_backend="twilio", twilio_account_sid=ACCOUNT_SID, twilio_auth_token="t" * 32
            )
        )
