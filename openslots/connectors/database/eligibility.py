"""Who may receive an Alert, as one query, and why each connection is or is not alerted.

The query must agree with `openslots.domain.eligibility.alert_reason` (the set it returns is the
set whose reason is `eligible`): tests/connectors/test_eligibility*.py check it per connection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Exists,
    Integer,
    ScalarSelect,
    Select,
    and_,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import aliased

from openslots.connectors.database._dialect import aware
from openslots.connectors.database.models import Channel, Offer, OptOut, Provider, Slot
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.availability import text_fits
from openslots.domain.eligibility import AlertReason, alert_reason, mrn_present, slot_reason
from openslots.domain.offers import Candidate
from openslots.domain.statuses import ConnectionStatus

CAP_DAYS = 7  # OPENSLOTS_ALERT_MAX_PER_WEEK counts the offers sent in the 7 days before


@dataclass(frozen=True, slots=True)
class SlotFacts:
    """What one slot adds to the rule: its time (availability windows) and when it opened (the
    contact cap counts the provider's offers sent in the 7 days before, other slots only)."""

    slot_id: int | None
    starts_at: dt.datetime
    duration_minutes: int | None
    timezone: str
    opened_at: dt.datetime
    max_per_week: int


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


def recent_offers(slot: SlotFacts) -> ScalarSelect[int]:
    """Offers of the connection's provider sent to it in the 7 days before the slot opened
    (this slot's own offers excluded, so `explain` later answers as the opening did)."""
    return offers_sent_before(
        ConnectionRow.id, ConnectionRow.provider_id, slot.opened_at, slot.slot_id
    )


def offers_sent_before(
    connection_id: Any, provider_id: Any, at: dt.datetime, other_than_slot: int | None
) -> ScalarSelect[int]:
    """The contact cap's count: offers of `provider_id` sent to `connection_id` (columns or
    values) in the 7 days up to `at`, not counting slot `other_than_slot`'s. Aliased tables,
    so that it also correlates inside a statement over offers."""
    earlier, its_slot = aliased(Offer), aliased(Slot)
    query = (
        select(func.count(earlier.id))
        .join(its_slot, its_slot.id == earlier.slot_id)
        .where(
            earlier.connection_id == connection_id,
            its_slot.provider_id == provider_id,
            earlier.sent_at > at - dt.timedelta(days=CAP_DAYS),
            earlier.sent_at <= at,
        )
    )
    if other_than_slot is not None:
        query = query.where(earlier.slot_id != other_than_slot)
    return query.scalar_subquery()


def last_offered() -> ScalarSelect[dt.datetime | None]:
    """When the connection's provider last sent it an offer (None: never)."""
    return (
        select(func.max(Offer.sent_at))
        .join(Slot, Slot.id == Offer.slot_id)
        .where(
            Offer.connection_id == ConnectionRow.id,
            Slot.provider_id == ConnectionRow.provider_id,
        )
        .scalar_subquery()
    )


def slot_candidates(
    conn: Connection, provider_id: int, location_id: int, slot: SlotFacts
) -> list[Candidate]:
    """The connections a slot is offered to: one query for the eligible set with what the slot
    adds (windows, recent offers), the pure rule over it (windows cannot be written portably in
    SQL), in no particular order (domain.offers.fair_order orders them)."""
    rows = conn.execute(
        select(
            ConnectionRow.id,
            ConnectionRow.availability,
            ConnectionRow.alert_order,
            recent_offers(slot).label("recent"),
            last_offered().label("last_offered_at"),
        ).where(ConnectionRow.id.in_(eligible_connections(provider_id, location_id)))
    )
    return [
        Candidate(row.id, row.alert_order, aware(row.last_offered_at))
        for row in rows
        if slot_reason(
            fits_availability=text_fits(
                row.availability, slot.starts_at, slot.duration_minutes, slot.timezone
            ),
            recent_offers=int(row.recent or 0),
            max_per_week=slot.max_per_week,
        )
        is AlertReason.ELIGIBLE
    ]


def eligible_connection_ids(
    conn: Connection, provider_id: int | None = None, location_id: int | None = None
) -> set[int]:
    return set(conn.execute(eligible_connections(provider_id, location_id)).scalars())


def alert_reasons(
    conn: Connection, provider_id: int, location_id: int, slot: SlotFacts | None = None
) -> dict[int, AlertReason]:
    """Connection id -> why it is or is not alerted for a slot of this provider and location,
    for every connection of the provider (the facts loaded here, the answer from the rule).
    With `slot`, also its windows and the contact cap (`outside_availability`, `contact_cap`)."""
    recent = recent_offers(slot) if slot is not None else literal(0, Integer)
    rows = conn.execute(
        select(
            ConnectionRow.id,
            ConnectionRow.status,
            ConnectionRow.location_id,
            ConnectionRow.mrn,
            ConnectionRow.availability,
            Provider.integrated,
            opted_out(
                ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
            ).label("opted_out"),
            recent.label("recent"),
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
            fits_availability=slot is None
            or text_fits(row.availability, slot.starts_at, slot.duration_minutes, slot.timezone),
            recent_offers=int(row.recent or 0),
            max_per_week=0 if slot is None else slot.max_per_week,
        )
        for row in rows
    }
