"""Shared fixtures: an isolated environment, both databases, one Prefect harness per run.

The PostgreSQL half uses OPENSLOTS_TEST_POSTGRES_URL (default: the local server's `test`
database). When that variable is set (CI sets it), an unreachable server fails the run;
otherwise the PostgreSQL half is skipped with the reason.
"""

from __future__ import annotations

import os

# Before prefect is imported anywhere: no telemetry from an offline machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text

from openslots.connectors.database import engine as engine_module
from openslots.connectors.database.models import Base

# No per-example deadline: the suite asserts behaviour, never speed, and a loaded 2-core
# machine stretched one 5 ms example past Hypothesis's 200 ms default (a test that sets its
# own deadline keeps it).
hypothesis_settings.register_profile("openslots", deadline=None)
hypothesis_settings.load_profile("openslots")

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_PG_REQUIRED = "OPENSLOTS_TEST_POSTGRES_URL" in os.environ
PG_URL = os.environ.get("OPENSLOTS_TEST_POSTGRES_URL", DEFAULT_PG_URL)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No developer setting leaks in: every OPENSLOTS_* variable is cleared, home is tmp."""
    for name in list(os.environ):
        if name.startswith("OPENSLOTS_") and name != "OPENSLOTS_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("OPENSLOTS_HOME", str(home))
    # Texts wait out the quiet hours: a test that sends them must not depend on when it runs
    # (the quiet-hours tests set them back and freeze the clock).
    monkeypatch.setenv("OPENSLOTS_SMS_QUIET_HOURS", "off")
    yield home
    engine_module.dispose_engines()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied per test (migrating each time would cost ~0.2 s)."""
    from openslots.connectors.database import upgrade_database
    from openslots.settings import Settings

    path = tmp_path_factory.mktemp("template") / "openslots.db"
    upgrade_database(Settings(database_url=f"sqlite:///{path}"))
    engine_module.dispose_engines()
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> str:
    """Migrate the PostgreSQL test database once per run, from an empty schema."""
    from openslots.connectors.database import upgrade_database
    from openslots.settings import Settings

    probe = create_engine(PG_URL)
    try:
        with probe.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:
        if _PG_REQUIRED:
            pytest.fail(f"PostgreSQL at OPENSLOTS_TEST_POSTGRES_URL unreachable: {exc}")
        pytest.skip(
            f"PostgreSQL not reachable ({type(exc).__name__}); set "
            "OPENSLOTS_TEST_POSTGRES_URL to require it"
        )
    finally:
        probe.dispose()
    upgrade_database(Settings(database_url=PG_URL))
    engine_module.dispose_engines()
    return PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    """The project engine on a fresh, migrated database of each kind; settings point at it."""
    if request.param == "sqlite":
        path = tmp_path / "openslots.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_ready")
        engine = create_engine(url)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
    monkeypatch.setenv("OPENSLOTS_DATABASE_URL", url)
    return engine_module.get_engine()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole run (starting one costs seconds; on a 2-core
    machine shared with other jobs it took over 60 s, which errored every test using it)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield
