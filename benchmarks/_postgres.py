"""The suite's own PostgreSQL database: created if missing (and then dropped at the end), a
fresh migrated schema per round, rows written counted by xmin, never a test database."""

from __future__ import annotations

import os
from typing import Any

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_openslots"
URL_VARIABLE = "OPENSLOTS_BENCH_POSTGRES_URL"
APP_NAME = "openslots-bench"
# Every round drops the schema `public`: never one of these.
REFUSED = {"postgres", "template0", "template1", "test", "test_lead"}
# The tables that hold patients, their connections and what is sent to them: a re-sync that
# changes nothing must write none of their rows (import batches, staging, findings and the
# audit log are bookkeeping of the run itself).
DATA_TABLES = ("providers", "locations", "clients", "connections", "invitations", "outbox")


class BenchPostgres:
    """One PostgreSQL database for the whole run, named by a SQLAlchemy URL."""

    def __init__(self, url: str | None = None):
        from sqlalchemy.engine import make_url

        self.url = make_url(url or os.environ.get(URL_VARIABLE) or DEFAULT_URL)
        name = self.url.database or ""
        if name in REFUSED:
            raise SystemExit(f"refusing to run benchmarks in the database {name!r}")
        self.name = name
        self.created = False
        self._held: Any = None  # the connection holding this run's advisory lock

    @property
    def sqlalchemy_url(self) -> str:
        """The URL openslots is given (its sessions carry the suite's application name)."""
        url = self.url.update_query_dict({"application_name": APP_NAME})
        return url.render_as_string(hide_password=False)

    def conninfo(self, database: str | None = None) -> str:
        """A libpq URL for psycopg, to this database or another of the same server."""
        url = self.url.set(drivername="postgresql", database=database or self.name)
        url = url.update_query_dict({"application_name": APP_NAME})
        return url.render_as_string(hide_password=False)

    def reachable(self) -> str | None:
        """None when the server answers, else why not (one line)."""
        import psycopg

        try:
            with psycopg.connect(self.conninfo("postgres"), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        return None

    def ensure(self) -> None:
        """Create the database when missing (it is then dropped by `drop_if_created`)."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)
            ).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{self.name}"')
                self.created = True

    def hold(self) -> None:
        """Take the database for this run, or refuse (SystemExit) when another run has it.

        Two runs on one database drop the schema under each other and apply each other's
        rows: a file drop sharing it with an MLLP round once reported 100,026 messages applied
        of 100,000. The lock is a session advisory lock on the server's `postgres` database
        (this one may be dropped at the end); it ends with the process or `release`.
        """
        import psycopg

        conn = psycopg.connect(self.conninfo("postgres"), autocommit=True)
        row = conn.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"openslots-bench:{self.name}",)
        ).fetchone()
        if not (row and row[0]):
            conn.close()
            raise SystemExit(
                f"another benchmark run is using the database {self.name!r}: wait for it, or "
                f"give this run its own (--postgres-url or {URL_VARIABLE})"
            )
        self._held = conn

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def end_sessions_left_behind(self) -> None:
        """Sessions of this suite still on the database (this run holds it) belong to a run
        that was killed: a query it left running, a `DROP SCHEMA` cut off. They are ended, or
        the first round's schema reset collides with them (session 9 lost a full run so)."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            left = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = %s AND pid <> pg_backend_pid()",
                (APP_NAME,),
            ).fetchall()
            for (pid,) in left:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        if left:
            print(f"ended {len(left)} session(s) a killed benchmark run left on {self.name!r}")

    def drop_if_created(self) -> None:
        import psycopg

        from openslots.connectors.database.engine import dispose_engines

        if not self.created:
            return
        dispose_engines()
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def empty_schema(self) -> None:
        """Drop and recreate `public` (pooled connections to it are closed first)."""
        from openslots.connectors.database.engine import dispose_engines

        dispose_engines()
        self.execute("DROP SCHEMA IF EXISTS public CASCADE")
        self.execute("CREATE SCHEMA public")

    def fresh_schema(self) -> None:
        """An empty schema migrated to this code's revision (OPENSLOTS_DATABASE_URL must name
        this database: the suite sets it before each scenario)."""
        from openslots.connectors.database import upgrade_database

        self.empty_schema()
        upgrade_database()

    def server_version(self) -> str:
        return str(self.execute("SHOW server_version")[0][0])

    def xid(self) -> int:
        """The next transaction's id (32-bit, as xmin holds it): rows written after this call
        have an xmin at or above it."""
        return int(self.execute("SELECT txid_current() % 4294967296")[0][0]) + 1

    def rows_written_since(self, xid: int) -> dict[str, int]:
        """Rows of the data tables inserted or updated (still present) since `xid`."""
        counts = {}
        for table in DATA_TABLES:
            rows = self.execute(
                f"SELECT count(*) FROM {table} WHERE xmin::text::bigint >= %s",
                (xid,),
            )
            counts[table] = int(rows[0][0])
        return counts

    def sessions_of_others(self) -> list[str]:
        """Application names of sessions on this database that are not the suite's."""
        rows = self.execute(
            "SELECT DISTINCT coalesce(nullif(application_name, ''), '?') FROM pg_stat_activity "
            "WHERE datname = %s AND application_name IS DISTINCT FROM %s "
            "AND pid <> pg_backend_pid()",
            (self.name, APP_NAME),
        )
        return sorted(name for (name,) in rows)
