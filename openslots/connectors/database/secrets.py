"""Installation-wide secrets kept in the database (`app_secrets`): generated once, then shared
by every process that uses the same database."""

from __future__ import annotations

import secrets
from typing import cast

from sqlalchemy import Connection, Table, select

from openslots.connectors.database._dialect import upsert
from openslots.connectors.database.models import AppSecret

TOKEN_KEY = "token_signing_key"


def stored_secret(conn: Connection, name: str) -> str | None:
    """The secret called `name`, or None when none was generated yet."""
    return conn.execute(select(AppSecret.value).where(AppSecret.name == name)).scalar_one_or_none()


def get_or_create_secret(conn: Connection, name: str) -> tuple[str, bool]:
    """(the secret, whether this call generated it). Two processes racing both read the one
    that was stored first: the insert does nothing when the name exists."""
    found = stored_secret(conn, name)
    if found is not None:
        return found, False
    conn.execute(
        upsert(conn, cast(Table, AppSecret.__table__))
        .values(name=name, value=secrets.token_urlsafe(48))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = stored_secret(conn, name)
    assert value is not None
    return value, True
