"""Who may receive an Alert, as one query, and why each connection is or is not alerted.

The query must agree with `openslots.domain.eligibility.alert_reason` (the set it returns is the
set whose reason is `eligible`): tests/connectors/test_eligibility*.py check it per connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Exists, Select, and_, func, not_, or_, select

from openslots.connectors.database.models import Channel, OptOut, Provider
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.eligibility import AlertReason, alert_reason, mrn_present
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
    # mrn_present(): trim() removes spaces only, as str.strip(" ") does.
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


def alert_reasons(conn: Connection, provider_id: int, location_id: int) -> dict[int, AlertReason]:
    """Connection id -> why it is or is not alerted for a slot of this provider and location,
    for every connection of the provider (the facts loaded here, the answer from the rule)."""
    rows = conn.execute(
        select(
            ConnectionRow.id,
            ConnectionRow.status,
            ConnectionRow.location_id,
            ConnectionRow.mrn,
            Provider.integrated,
            opted_out(
                ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
            ).label("opted_out"),
        )
        .join(Provider, Provider.id == ConnectionRow.provider_id)
        .where(ConnectionRow.provider_id == provider_id)
    )
    return {
        row.id: alert_reason(
            ConnectionStatus(row.status),
            integrated=bool(row.integrated),
            has_mrn=mrn_present(row.mrn),
            opted_out=bool(row.opted_out),
            at_location=row.location_id == location_id,
        )
        for row in rows
    }
