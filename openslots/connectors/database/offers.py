"""Open Slots offers: written set-based from the eligibility query when a slot opens, turned into
outbox messages by dispatch once due, withdrawn (with their unsent messages) when the slot is
claimed or closed. The rules (groups, quiet hours, lead time) come from domain.offers.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Table,
    and_,
    literal,
    select,
    text,
    update,
)

from openslots.connectors.database._dialect import aware, upsert
from openslots.connectors.database.eligibility import (
    SlotFacts,
    not_opted_out,
    offers_sent_before,
    slot_candidates,
)
from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.models import (
    Channel,
    Location,
    Offer,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Provider,
    Slot,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.outbox import key_sql
from openslots.domain.eligibility import AlertReason
from openslots.domain.messages import offer_key_parts
from openslots.domain.offers import OfferMode, OfferState, fair_order, group_due, plan_groups
from openslots.domain.statuses import ClosedReason, SlotStatus

OFFERS = cast(Table, Offer.__table__)
OUTBOX = cast(Table, OutboxMessage.__table__)
WITHDRAWN = "slot no longer available"  # outbox.last_error of a withdrawn offer's message


def create_offers(
    conn: Connection,
    slot_id: int,
    provider_id: int,
    location_id: int,
    mode: OfferMode,
    group_size: int,
    timeout_minutes: int,
    now: dt.datetime,
    slot: SlotFacts,
) -> int:
    """One offer per connection eligible for the slot (its provider and location, its windows,
    the contact cap): one query for the candidates, the pure rule and order, one insert.
    Returns how many are eligible. Idempotent per slot (unique slot x connection: ON CONFLICT
    DO NOTHING)."""
    # Blast: everyone in group 0, due now. Serial: the practice's order, ties to whoever was
    # offered least recently (fair_order); Priority plays no part.
    ordered = fair_order(slot_candidates(conn, provider_id, location_id, slot))
    planned = [
        (cid, group, group_due(now, group, timeout_minutes))
        for cid, group in plan_groups(ordered, mode, group_size)
    ]
    if planned:
        _insert_offers(conn, slot_id, planned, now)
    return len(ordered)


def _insert_offers(
    conn: Connection, slot_id: int, planned: list[tuple[int, int, dt.datetime]], now: dt.datetime
) -> None:
    """Pending offers (connection, group, due) of one slot; one already there is kept."""
    if conn.dialect.name == "postgresql":
        # One statement over one JSON document: psycopg's executemany sent the 10,000 offers
        # of a Blast as 10,000 statements (~35-90 us each here, most of opening the slot).
        doc = json.dumps([[cid, group, due.isoformat()] for cid, group, due in planned])
        conn.execute(
            text(
                "INSERT INTO offers (slot_id, connection_id, group_number, due_at, state,"
                " claim_attempts, created_at) "
                "SELECT :slot, (r->>0)::integer, (r->>1)::integer, (r->>2)::timestamptz,"
                " :state, 0, :now FROM json_array_elements(CAST(:rows AS json)) AS r "
                "ON CONFLICT (slot_id, connection_id) DO NOTHING"
            ),
            {"slot": slot_id, "state": OfferState.PENDING.value, "now": now, "rows": doc},
        )
        return
    rows = [
        {
            "slot_id": slot_id,
            "connection_id": cid,
            "group_number": group,
            "due_at": due,
            "state": OfferState.PENDING,
            "claim_attempts": 0,
            "created_at": now,
        }
        for cid, group, due in planned
    ]
    conn.execute(
        upsert(conn, OFFERS).on_conflict_do_nothing(index_elements=["slot_id", "connection_id"]),
        rows,
    )


@dataclass(frozen=True, slots=True)
class DueGroup:
    """Offers of one slot that share a due time (one Serial group, or all of a Blast)."""

    slot_id: int
    due_at: dt.datetime
    starts_at: dt.datetime
    timezone: str | None


def due_groups(
    conn: Connection, now: dt.datetime, slot_ids: Sequence[int] | None = None
) -> list[DueGroup]:
    """Pending offers of open slots that are due, grouped by slot and due time."""
    query = (
        select(Offer.slot_id, Offer.due_at, Slot.starts_at, Location.timezone)
        .join(Slot, Slot.id == Offer.slot_id)
        .join(Location, Location.id == Slot.location_id)
        .where(
            Offer.state == OfferState.PENDING,
            Offer.due_at <= now,
            Slot.status == SlotStatus.OPEN,
            Slot.starts_at.is_not(None),
        )
        .group_by(Offer.slot_id, Offer.due_at, Slot.starts_at, Location.timezone)
        .order_by(Offer.slot_id, Offer.due_at)
    )
    if slot_ids is not None:
        query = query.where(Offer.slot_id.in_(list(slot_ids)))
    return [
        DueGroup(row.slot_id, aware(row.due_at), aware(row.starts_at), row.timezone)
        for row in conn.execute(query)
    ]


def _group(slot_id: int, due_at: dt.datetime) -> ColumnElement[bool]:
    return and_(
        Offer.slot_id == slot_id,
        Offer.due_at == due_at,
        Offer.state == OfferState.PENDING,
    )


def skip_capped(
    conn: Connection, slot_id: int, due_at: dt.datetime, now: dt.datetime, max_per_week: int
) -> int:
    """A due group's offers to connections that reached the contact cap since the slot opened
    (other slots' offers went out meanwhile) are skipped (`contact_cap`), in one UPDATE."""
    if max_per_week <= 0:
        return 0
    provider_id = select(Slot.provider_id).where(Slot.id == slot_id).scalar_subquery()
    recent = offers_sent_before(Offer.connection_id, provider_id, now, slot_id)
    result = conn.execute(
        update(Offer)
        .where(_group(slot_id, due_at), recent >= max_per_week)
        .values(state=OfferState.SKIPPED, reason=AlertReason.CONTACT_CAP.value)
    )
    return int(result.rowcount or 0)


def offer_message_source(
    key_parts: Sequence[object], kind: OutboxKind, channel: Channel, now: dt.datetime
) -> Select[Any]:
    """The columns of one pending outbox message per offer row (`insert_offer_messages`),
    joined to the offer's connection; the caller adds its joins and conditions."""
    return (
        select(
            key_sql(key_parts),
            literal(kind.value, String),
            literal(channel, OUTBOX.c.channel.type),
            Offer.id,
            literal(OutboxStatus.PENDING, OUTBOX.c.status.type),
            literal(0, Integer),
            literal(now, OUTBOX.c.created_at.type),
        )
        .select_from(Offer)
        .join(ConnectionRow, ConnectionRow.id == Offer.connection_id)
    )


def insert_offer_messages(conn: Connection, source: Select[Any]) -> int:
    """INSERT ... SELECT of `offer_message_source` rows, a key already there skipped (ON
    CONFLICT DO NOTHING): each message is written once whoever writes it. Returns how many."""
    statement = (
        upsert(conn, OUTBOX)
        .from_select(
            ["idempotency_key", "kind", "channel", "offer_id", "status", "attempts", "created_at"],
            source,
            include_defaults=False,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    result = conn.execute(statement, execution_options={"preserve_rowcount": True})
    return max(int(result.rowcount or 0), 0)


def materialise_group(
    conn: Connection, slot_id: int, due_at: dt.datetime, now: dt.datetime
) -> tuple[int, int]:
    """Outbox messages for one due group, set-based (`offer:{id}:{channel}`, ON CONFLICT DO
    NOTHING): an email each, a text where there is a mobile phone; a contact that opted out
    since the slot opened gets nothing. Returns (offers sent, messages written)."""
    reachable = not_opted_out(
        ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
    )
    written = 0
    for channel, address in (
        (Channel.EMAIL, ConnectionRow.email),
        (Channel.SMS, ConnectionRow.mobile_phone),
    ):
        source = (
            offer_message_source(offer_key_parts(Offer.id, channel), OutboxKind.SLOT_ALERT,
                                 channel, now)
            .where(_group(slot_id, due_at), address.is_not(None), reachable)
            .order_by(Offer.id)
        )  # fmt: skip
        written += insert_offer_messages(conn, source)
    sent = conn.execute(
        update(Offer)
        .where(_group(slot_id, due_at))
        .values(state=OfferState.SENT, sent_at=now, reason=None)
    )
    return int(sent.rowcount or 0), written


def delay_pending(conn: Connection, slot_id: int, until: dt.datetime, delay: dt.timedelta) -> int:
    """Quiet hours: the due group waits until `until`, and every later group of the slot moves
    by the same delay, so a Serial slot keeps its timeouts between groups."""
    due_times = sorted(
        {
            aware(at)
            for at in conn.execute(
                select(Offer.due_at).where(
                    Offer.slot_id == slot_id, Offer.state == OfferState.PENDING
                )
            ).scalars()
        }
    )
    moved = 0
    for at in reversed(due_times):  # latest first: a moved group never meets an unmoved one
        target = max(at + delay, until)
        result = conn.execute(
            update(Offer).where(_group(slot_id, at)).values(due_at=target, reason="quiet_hours")
        )
        moved += int(result.rowcount or 0)
    return moved


def skip_group(conn: Connection, slot_id: int, due_at: dt.datetime, reason: str) -> int:
    result = conn.execute(
        update(Offer).where(_group(slot_id, due_at)).values(state=OfferState.SKIPPED, reason=reason)
    )
    return int(result.rowcount or 0)


def withdraw(conn: Connection, slot_id: int) -> int:
    """The slot was claimed or closed: every offer not yet sent is withdrawn, and every message
    of the slot's offers not yet handed to a sender is cancelled. Returns messages cancelled."""
    conn.execute(
        update(Offer)
        .where(Offer.slot_id == slot_id, Offer.state == OfferState.PENDING)
        .values(state=OfferState.WITHDRAWN)
    )
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.offer_id.in_(select(Offer.id).where(Offer.slot_id == slot_id)),
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.FAILED]),
        )
        .values(status=OutboxStatus.CANCELLED, last_error=WITHDRAWN)
    )
    return int(result.rowcount or 0)


def close_started(conn: Connection, cutoff: dt.datetime, now: dt.datetime) -> list[int]:
    """Open slots starting before `cutoff` (now + lead time) close unclaimed (`lead_time`) and
    withdraw their offers. Returns their ids."""
    ids = list(
        conn.execute(
            update(Slot)
            .where(Slot.status == SlotStatus.OPEN, Slot.starts_at < cutoff)
            .values(status=SlotStatus.CLOSED, closed_reason=ClosedReason.LEAD_TIME, closed_at=now)
            .returning(Slot.id)
        ).scalars()
    )
    for slot_id in ids:
        withdraw(conn, slot_id)
    return ids


# --- what to send ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingOffer:
    """What a sender needs for one claimed offer message (patient data: stays in-task)."""

    outbox_id: int
    key: str
    kind: str
    channel: Channel
    attempts: int
    offer_id: int
    email: str | None
    mobile_phone: str | None
    first_name: str
    last_name: str
    provider_id: int
    provider: str
    location: str
    timezone: str | None
    starts_at: dt.datetime | None
    duration_minutes: int | None
    visit_type: str | None
    slot_open: bool
    opted_out: bool


def load_offers(conn: Connection, ids: Sequence[int]) -> list[PendingOffer]:
    """The offer messages among `ids` (others are left to their own loader)."""
    opted_out = contact_opted_out(
        ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
    )
    rows = conn.execute(
        select(
            OutboxMessage.id.label("outbox_id"),
            OutboxMessage.idempotency_key.label("key"),
            OutboxMessage.kind,
            OutboxMessage.channel,
            OutboxMessage.attempts,
            Offer.id.label("offer_id"),
            ConnectionRow.email,
            ConnectionRow.mobile_phone,
            ConnectionRow.first_name,
            ConnectionRow.last_name,
            Slot.provider_id,
            Provider.name.label("provider"),
            Location.name.label("location"),
            Location.timezone,
            Slot.starts_at,
            Slot.duration_minutes,
            Slot.visit_type,
            (Slot.status == SlotStatus.OPEN).label("slot_open"),
            opted_out.label("opted_out"),
        )
        .join(Offer, Offer.id == OutboxMessage.offer_id)
        .join(ConnectionRow, ConnectionRow.id == Offer.connection_id)
        .join(Slot, Slot.id == Offer.slot_id)
        .join(Provider, Provider.id == Slot.provider_id)
        .join(Location, Location.id == Slot.location_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    ).all()
    return [
        PendingOffer(
            **(
                row._asdict()
                | {
                    "channel": Channel(row.channel),
                    "starts_at": None if row.starts_at is None else aware(row.starts_at),
                    "slot_open": bool(row.slot_open),
                    "opted_out": bool(row.opted_out),
                }
            )
        )
        for row in rows
    ]
