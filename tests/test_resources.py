"""Wiring: resources follow the settings they were built from, and the clock is the one clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine

from openslots.connectors.email import FileEmailSender
from openslots.connectors.sms import FileSmsSender
from openslots.domain.clock import frozen_clock
from openslots.errors import ConfigurationError
from openslots.resources import resources
from openslots.settings import Settings


def test_resources_follow_the_settings(tmp_path: Path) -> None:
    res = resources(Settings(home=tmp_path))
    assert res.engine.url.database == str(tmp_path / "openslots.db")
    assert res.engine is res.engine  # built once
    assert isinstance(res.email, FileEmailSender)
    assert res.email.directory == tmp_path / "outbox" / "email"
    assert isinstance(res.sms, FileSmsSender)


def test_resources_read_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_HOME", str(tmp_path / "elsewhere"))
    assert resources().settings.resolved_home() == tmp_path / "elsewhere"


def test_resources_clock_is_the_process_clock() -> None:
    at = dt.datetime(2027, 3, 14, 1, 59, tzinfo=dt.UTC)
    with frozen_clock(at):
        assert resources().now() == at


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="openslots db upgrade"):
        resources(Settings(home=tmp_path)).require_current_schema()


def test_the_signing_key_is_generated_once_and_shared(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="openslots"):
        first = resources().secret_key()
    assert len(first) >= 32
    assert "OPENSLOTS_SECRET_KEY is unset" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="openslots"):
        again = resources().secret_key()  # another process would build its own Resources
    assert again == first and caplog.text == ""


def test_the_configured_signing_key_wins(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSLOTS_SECRET_KEY", "k" * 40)
    assert resources().secret_key() == "k" * 40
