"""The benchmarks' own PostgreSQL databases: created if missing, a fresh migrated schema per
round, and never the test suite's `test` (benchmarks only)."""

from __future__ import annotations

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def conninfo(dbname: str, app_name: str) -> str:
    if dbname == "test":  # the test suite's database: never
        raise SystemExit("refusing to use the database 'test'")
    return (
        f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname} application_name={app_name}"
    )


def ensure_database(dbname: str, app_name: str) -> None:
    import psycopg

    with psycopg.connect(conninfo("postgres", app_name), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')


def fresh_schema(dbname: str, app_name: str) -> None:
    """Drop and recreate `public`, then migrate it to this code's revision (the settings'
    OPENSLOTS_DATABASE_URL must name the same database)."""
    import psycopg

    from openslots.connectors.database import upgrade_database
    from openslots.connectors.database.engine import dispose_engines

    dispose_engines()
    with psycopg.connect(conninfo(dbname, app_name), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
    upgrade_database()
