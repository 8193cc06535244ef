"""What differs between PostgreSQL and SQLite, one named function per difference."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar, overload

from sqlalchemy import Connection, Select, Table
from sqlalchemy.dialects import postgresql, sqlite

S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def skip_locked(conn: Connection, query: S) -> S:
    """Lock the rows a claim reads, skipping rows another worker holds (PostgreSQL); SQLite
    serialises writers by itself."""
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def upsert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that takes `on_conflict_do_update` / `on_conflict_do_nothing`."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@overload
def aware(value: dt.datetime) -> dt.datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A timestamp as read back: SQLite returns naive UTC, PostgreSQL an aware instant."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)
