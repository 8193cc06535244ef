"""Who may receive an Alert, as one query. It must agree with
`openslots.domain.statuses.eligible_for_alerts` (tests/connectors/test_eligibility.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Exists, Select, and_, func, not_, or_, select

from openslots.connectors.database.models import Channel, OptOut, Provider
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.statuses import ConnectionStatus


def opted_out_on(provider_id: Any, channel: Channel, address: Any) -> Exists:
    """True when `address` opted out of `provider_id` on `channel` (columns or values)."""
    return (
        select(OptOut.id)
        .where(
            OptOut.provider_id == provider_id,
            OptOut.channel == channel,
            OptOut.address == address,
        )
        .exists()
    )


def opted_out(provider_id: Any, email: Any, phone: Any) -> ColumnElement[bool]:
    """True when `email` or `phone` opted out of `provider_id` (columns or values): the one
    definition of an opted-out contact, for connections (alerts) and clients (invitations)."""
    return or_(
        opted_out_on(provider_id, Channel.EMAIL, email),
        opted_out_on(provider_id, Channel.SMS, phone),
    )


def not_opted_out(provider_id: Any, email: Any, phone: Any) -> ColumnElement[bool]:
    """`not_(opted_out(...))` written as two NOT EXISTS, for set-based statements over a whole
    roster: PostgreSQL plans each NOT EXISTS as an anti-join, but runs a NOT over an OR of
    EXISTS as a subquery per row."""
    return and_(
        ~opted_out_on(provider_id, Channel.EMAIL, email),
        ~opted_out_on(provider_id, Channel.SMS, phone),
    )


def eligible_connections(
    provider_id: int | None = None, location_id: int | None = None
) -> Select[int]:
    """Approved only; for an integrated provider also an MRN; never an opted-out contact."""
    has_mrn = and_(ConnectionRow.mrn.is_not(None), func.trim(ConnectionRow.mrn) != "")
    query = (
        select(ConnectionRow.id)
        .join(Provider, Provider.id == ConnectionRow.provider_id)
        .where(
            ConnectionRow.status == ConnectionStatus.APPROVED,
            or_(Provider.integrated.is_(False), has_mrn),
            not_(
                opted_out(
                    ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
                )
            ),
        )
    )
    if provider_id is not None:
        query = query.where(ConnectionRow.provider_id == provider_id)
    if location_id is not None:
        query = query.where(ConnectionRow.location_id == location_id)
    return query


def eligible_connection_ids(
    conn: Connection, provider_id: int | None = None, location_id: int | None = None
) -> set[int]:
    return set(conn.execute(eligible_connections(provider_id, location_id)).scalars())
