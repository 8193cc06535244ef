"""Settings of the senders, links and dispatch: validated early, secrets never shown."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from openslots.connectors.email import FileEmailSender, email_sender
from openslots.connectors.sms import FileSmsSender, sms_sender
from openslots.errors import ConfigurationError
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


def test_data_paths_are_absolute_and_default_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSLOTS_HOME", "data")
    settings = Settings()
    assert settings.resolved_home() == tmp_path / "data"
    assert settings.resolved_outbox_dir() == tmp_path / "data" / "outbox"
    assert settings.resolved_drop_dir() == tmp_path / "data" / "drop"
    assert settings.resolved_prefect_home() == tmp_path / "data" / "prefect"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'data' / 'openslots.db'}"


@pytest.mark.parametrize(
    ("variable", "read"),
    [
        ("OPENSLOTS_HOME", Settings.resolved_home),
        ("OPENSLOTS_HOME", Settings.resolved_database_url),
        ("OPENSLOTS_OUTBOX_DIR", Settings.resolved_outbox_dir),
        ("OPENSLOTS_DROP_DIR", Settings.resolved_drop_dir),
    ],
)
def test_a_deployed_run_refuses_a_relative_data_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, read: Any
) -> None:
    """A worker's flow run works in the code checkout it pulled: relative data would land
    there. The worker sets PREFECT__DEPLOYMENT_ID in the runs it starts."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT__DEPLOYMENT_ID", "5a1e0c1e-0000-4000-8000-000000000001")
    monkeypatch.setenv(variable, "relative")
    with pytest.raises(ConfigurationError) as caught:
        read(Settings())
    message = str(caught.value)
    assert variable in message and str(tmp_path) in message and "\n" not in message

    monkeypatch.setenv(variable, str(tmp_path / "absolute"))
    read(Settings())  # absolute: fine
    monkeypatch.delenv("PREFECT__DEPLOYMENT_ID")
    monkeypatch.setenv(variable, "relative")
    read(Settings())  # not a deployed run (the CLI, serve): relative to the working directory


def test_prefect_workers_still_mark_the_runs_they_start() -> None:
    """The guard above reads what Prefect's workers put in a flow run's environment; a Prefect
    upgrade that renames it must fail here, not silently write data into checkouts."""
    from types import SimpleNamespace
    from uuid import uuid4

    from prefect.workers.base import BaseJobConfiguration

    deployment_id = uuid4()
    environment = BaseJobConfiguration._base_attribution_environment(
        flow_run=SimpleNamespace(deployment_id=deployment_id, flow_id=None)  # type: ignore[arg-type]
    )
    assert environment["PREFECT__DEPLOYMENT_ID"] == str(deployment_id)
    assert Settings.model_fields["prefect_deployment_id"].validation_alias == (
        "PREFECT__DEPLOYMENT_ID"
    )


def test_settings_are_read_again_only_when_their_environment_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openslots.settings import get_settings

    monkeypatch.setenv("OPENSLOTS_CHUNK_SIZE", "77")
    first = get_settings()
    assert get_settings() is first  # same environment: the same (frozen) object
    monkeypatch.setenv("openslots_chunk_size", "78")  # matched ignoring case, as Settings does
    monkeypatch.delenv("OPENSLOTS_CHUNK_SIZE")
    assert get_settings().chunk_size == 78
    monkeypatch.setenv("PREFECT__DEPLOYMENT_ID", "d-1")
    assert get_settings().prefect_deployment_id == "d-1"


def test_every_alias_a_setting_is_read_from_is_in_the_cache_key() -> None:
    from openslots.settings import ALIASES

    aliases = {f.validation_alias for f in Settings.model_fields.values() if f.validation_alias}
    assert {str(alias).upper() for alias in aliases} <= ALIASES
