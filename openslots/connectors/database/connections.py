"""Connections as the client's side creates them (mobile registrations arrive in a later issue).

Used by the demo to show MRN mapping, and by tests to build the states the seed describes.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, func, insert, select

from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.normalise import clean_value, email_value
from openslots.domain.statuses import ConnectionStatus


def add_connection(
    conn: Connection,
    *,
    provider_id: int,
    location_id: int,
    first_name: str,
    last_name: str,
    date_of_birth: dt.date,
    email: str,
    status: ConnectionStatus = ConnectionStatus.PENDING,
    mrn: str | None = None,
    mobile_phone: str | None = None,
    client_id: int | None = None,
) -> int:
    """Insert a connection (names cleaned, email normalised as every source does, name key
    derived); returns its id."""
    return conn.execute(
        insert(ConnectionRow)
        .values(
            provider_id=provider_id,
            location_id=location_id,
            first_name=clean_value(first_name),
            last_name=clean_value(last_name),
            date_of_birth=date_of_birth,
            email=email_value(email),
            mobile_phone=mobile_phone,
            status=status,
            mrn=mrn,
            client_id=client_id,
        )
        .returning(ConnectionRow.id)
    ).scalar_one()


def count_connections_of_provider(conn: Connection, provider_id: int) -> int:
    return int(
        conn.execute(
            select(func.count()).where(ConnectionRow.provider_id == provider_id)
        ).scalar_one()
    )
