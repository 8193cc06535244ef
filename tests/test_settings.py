"""Settings of the senders, links and dispatch: validated early, secrets never shown."""

from __future__ import annotations

from datetime import time

import pytest
from pydantic import ValidationError

from openslots.connectors.email import FileEmailSender, email_sender
from openslots.connectors.sms import FileSmsSender, sms_sender
from openslots.settings import Settings


def test_defaults_keep_the_file_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENSLOTS_SMS_QUIET_HOURS")  # conftest turns them off for other tests
    settings = Settings()
    assert isinstance(email_sender(settings), FileEmailSender)
    assert isinstance(sms_sender(settings), FileSmsSender)
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.resolved_quiet_hours() == (time(21), time(8))
    assert (settings.dispatch_retry_base_seconds, settings.dispatch_max_attempts) == (30, 8)
    assert settings.dispatch_connections == 4


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSLOTS_SMS_QUIET_HOURS", "off")
    monkeypatch.setenv("OPENSLOTS_SMTP_SSL", "true")
    monkeypatch.setenv("OPENSLOTS_PUBLIC_URL", "https://alerts.clinic.example/")
    settings = Settings()
    assert settings.resolved_quiet_hours() is None
    assert settings.resolved_smtp_port() == 465 and not settings.resolved_smtp_starttls()
    assert settings.public_url == "https://alerts.clinic.example"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sms_quiet_hours", "9pm-8am"),
        ("sms_quiet_hours", "25:00-08:00"),
        ("default_timezone", "Mars/Olympus_Mons"),
        ("public_url", "alerts.clinic.example"),
        ("twilio_api_base_url", "ftp://api.twilio.com"),
        ("resend_cadence", "21,30,3O"),
        ("resend_cadence", "30,21"),
    ],
)
def test_bad_values_are_clear_errors(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value})
    assert field in str(caught.value)


def test_secrets_are_hidden_even_when_refused() -> None:
    short = "too-short-secret"
    with pytest.raises(ValidationError) as caught:
        Settings(secret_key=short)
    assert short not in str(caught.value)
    settings = Settings(
        secret_key="k" * 40, smtp_password="smtp-pass-xyz", twilio_auth_token="twilio-tok-xyz"
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "k" * 40 not in shown and "smtp-pass-xyz" not in shown and "twilio-tok-xyz" not in shown


def test_ssl_and_starttls_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="exclude each other"):
        Settings(smtp_ssl=True, smtp_starttls=True)
