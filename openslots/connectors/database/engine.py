"""Engine creation and schema migration: one engine per URL per process."""

from __future__ import annotations

import re
import sqlite3
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from openslots.errors import ConfigurationError
from openslots.settings import Settings, get_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"


_ENGINES: dict[str, Engine] = {}


def _engine_for(url: str, pool_size: int) -> Engine:
    if url not in _ENGINES:
        _ENGINES[url] = _create(url, pool_size)
    return _ENGINES[url]


def _create(url: str, pool_size: int) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": 30},
            pool_pre_ping=True,
            pool_size=pool_size,  # every sending thread holds one for its whole run
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks and breaks SAVEPOINT; take it over.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # hide_parameters: a failed statement's text must not quote patient values into logs.
    # The pool holds a connection for every sending thread (each keeps its own for the whole
    # run: sender_ledger.SenderLedger) and the lease heartbeat and the worker's own.
    return create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=pool_size)


SQLITE_BUSY_SECONDS = 30
# Page cache per connection, in KiB (SQLite's default is 2 MiB): a 1M-row roster's inserts
# into clients, invitations and fingerprints and their indexes spilled out of 2 MiB and
# re-read pages from the OS; with 64 MiB its apply took 22-24 s instead of 34-35 s (256 MiB:
# no better). Pages are allocated as they are read, so a small database stays small.
SQLITE_CACHE_KIB = 65_536


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys=ON")
    _wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _wal(cursor: Any) -> None:
    """Switch a new file to WAL, waiting for another process's first transaction on it.

    SQLite answers `database is locked` at once, without its busy handler, when another
    connection writes while the mode changes (two first commands at once on a new file), so
    the wait is ours: retry until the busy timeout, then a clear error, never a traceback.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"the SQLite database stayed locked by another process for "
                    f"{SQLITE_BUSY_SECONDS} s; try again when it has finished"
                ) from None
            time.sleep(0.05)


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    return _engine_for(settings.resolved_database_url(), _pool_size(settings))


def _pool_size(settings: Settings) -> int:
    """Every caller sizes the pool alike: the first to ask for the URL's engine makes it."""
    return max(5, settings.dispatch_connections + 3)


def dispose_engines() -> None:
    """Close every pooled connection (tests, and forked workers)."""
    while _ENGINES:
        _ENGINES.popitem()[1].dispose()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL (None for other databases and :memory:)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "")


_REVISION_LINE = re.compile(r'^(down_revision|revision)\b[^=]*=\s*(?:"([^"]*)"|None)', re.M)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration this code ships: the revision no other revision names as its
    `down_revision`. Read from the scripts' text (alembic's ScriptDirectory gives the same
    answer, tests/connectors/test_migrations.py checks it) so that a command that only checks
    the schema does not import alembic (~0.1 s of every command)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    if len(heads) > 1:
        raise ConfigurationError(f"the migrations have several heads: {sorted(heads)}")
    return next(iter(heads), None)


def current_revision(connection: Connection) -> str | None:
    """The revision alembic recorded in the database (None if it was never migrated)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def require_current_schema(settings: Settings | None = None) -> None:
    """Fail clearly when the database was never migrated or is behind this code's migrations.

    Flows and commands do not migrate by themselves: several workers would race to do it, and a
    read must not write. Only `openslots db upgrade` (and the demo) migrate. A SQLite file that
    does not exist is not created here (connecting would create it, and its directory).
    """
    settings = settings or get_settings()
    url = settings.resolved_database_url()
    head = head_revision()
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        current = None
    else:
        with _engine_for(url, _pool_size(settings)).connect() as connection:
            current = current_revision(connection)
    if current != head:
        raise ConfigurationError(
            f"database schema is at revision {current or 'none'}, this code needs {head} "
            f"(database {display_url(settings)}): run `openslots db upgrade` first"
        )


def display_url(settings: Settings | None = None) -> str:
    """The database URL with its password hidden, for messages and `db upgrade --json`."""
    url = (settings or get_settings()).resolved_database_url()
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """PRAGMA foreign_keys on the driver's connection: through SQLAlchemy it would open a
    transaction first, inside which SQLite ignores it."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def upgrade_database(settings: Settings | None = None, revision: str = "head") -> str:
    """Create or migrate the schema to `revision`; returns the revision now current."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    settings = settings or get_settings()
    url = settings.resolved_database_url()
    engine = _engine_for(url, _pool_size(settings))
    config = alembic_config(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite changes a table by copying it; with foreign keys on, dropping the old copy
            # would cascade into every table that references it (SQLite's own 12-step recipe:
            # keys off outside the transaction, checked before commit).
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        tables = sorted({str(row[0]) for row in broken})
                        raise ConfigurationError(
                            f"the upgrade would leave rows pointing at missing rows in {tables}; "
                            "nothing was changed"
                        )
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current or "base"
