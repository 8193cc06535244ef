"""Only `openslots db upgrade` (and `demo`) migrate: every other command on an unmigrated
database exits 1 and says to run it, and a read-only command never creates a SQLite file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from openslots.cli import app
from openslots.connectors.database import engine as engine_module
from tests.factories import person, roster_file

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
UPGRADE_FIRST = "run `openslots db upgrade` first"
SCHEMA = "cli_unmigrated"


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> Iterator[Path | None]:
    """An empty database: the default SQLite file in a home that does not exist yet (yields
    that file's path), or an empty PostgreSQL schema (yields None)."""
    if request.param == "sqlite":
        yield isolated_env / "openslots.db"
        return
    base = request.getfixturevalue("postgres_ready")
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    monkeypatch.setenv("OPENSLOTS_DATABASE_URL", url.render_as_string(hide_password=False))
    try:
        yield None
    finally:
        engine_module.dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        admin.dispose()


def commands(roster: Path) -> dict[str, list[str]]:
    return {
        "providers list": ["providers", "list"],
        "outbox status": ["outbox", "status"],
        "roster import": ["roster", "import", str(roster), "--provider", "P", "--location", "L"],
        "invitations list": ["invitations", "list", "--provider", "P"],
        "invitations resend-due": ["invitations", "resend-due", "--dry-run"],
        "providers set-cadence": ["providers", "set-cadence", "P", "21,30"],
    }


def test_commands_refuse_an_unmigrated_database_until_db_upgrade(
    unmigrated: Path | None, tmp_path: Path
) -> None:
    roster = roster_file(tmp_path / "r.csv", [person(1)])
    for name, args in commands(roster).items():
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 1, name
        error = json.loads(result.stdout)
        assert set(error) == {"error"}, name
        assert error["error"].startswith("database schema is at revision none, "), name
        assert error["error"].endswith(UPGRADE_FIRST), name
        assert f"(database {engine_module.display_url()})" in error["error"], name
        assert "error:" in result.stderr and "db upgrade" in result.stderr, name

        human = runner.invoke(app, args)
        assert human.exit_code == 1, name
        assert human.stdout == "", name
        assert "db upgrade" in human.stderr, name
        if unmigrated is not None:  # SQLite: a refused command wrote nothing, not even a file
            assert not unmigrated.exists(), name
            assert not unmigrated.parent.exists(), name

    result = runner.invoke(app, ["db", "upgrade", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["revision"] == engine_module.head_revision()
    if unmigrated is not None:
        assert unmigrated.exists()

    done = {name: runner.invoke(app, [*args, "--json"]) for name, args in commands(roster).items()}
    assert {name: r.exit_code for name, r in done.items()} == dict.fromkeys(done, 0)
    assert json.loads(done["providers list"].stdout) == []  # listed before the import ran
    assert json.loads(done["outbox status"].stdout) == {}
    assert json.loads(done["roster import"].stdout)["accepted"] == 1
    assert [r["status"] for r in json.loads(done["invitations list"].stdout)] == ["Queued"]


def test_an_existing_but_empty_sqlite_file_is_refused_too(isolated_env: Path) -> None:
    isolated_env.mkdir()
    path = isolated_env / "openslots.db"
    path.touch()
    result = runner.invoke(app, ["outbox", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].endswith(UPGRADE_FIRST)


def test_the_refusal_names_the_database_without_its_password(
    unmigrated: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow run on a worker says which database to upgrade (workers may read its URL from a
    Secret block), never the password in that URL."""
    from openslots.errors import ConfigurationError
    from openslots.resources import resources

    if unmigrated is None:  # PostgreSQL (trusted locally, so any password connects)
        url = make_url(os.environ["OPENSLOTS_DATABASE_URL"]).set(password="pw-Zq93x")
        monkeypatch.setenv("OPENSLOTS_DATABASE_URL", url.render_as_string(hide_password=False))
    with pytest.raises(ConfigurationError) as caught:
        resources().require_current_schema()
    message = str(caught.value)
    assert "pw-Zq93x" not in message
    if unmigrated is None:
        assert "postgres:***@" in message
    else:
        assert f"(database sqlite:///{unmigrated}): run `openslots db upgrade` first" in message
