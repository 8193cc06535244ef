"""What patients do with an offer's link (view, decline) and the messages a claim owes: the
winner's confirmation and, where the practice wants them, the others' "no longer available".
The rules come from domain.offer_responses; this module loads and writes.

The claim messages are intents like the offers themselves: a claimed slot whose start is still
ahead owes them, and `queue_claim_messages` writes whatever is owed set-based (`offer:{id}:
confirmation:{channel}`, `offer:{id}:unavailable:{channel}`, ON CONFLICT DO NOTHING), so the
claim itself and every later dispatch run may call it and nothing is written twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Select,
    Table,
    case,
    func,
    select,
    update,
)
from sqlalchemy.orm import aliased

from openslots.connectors.database._dialect import aware
from openslots.connectors.database.eligibility import not_opted_out
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
from openslots.connectors.database.offers import insert_offer_messages, offer_message_source
from openslots.domain.messages import OfferOutcome, offer_outcome_key_parts
from openslots.domain.offer_responses import (
    decline_answer,
    group_declined,
    no_one_left,
    pull_forward,
)
from openslots.domain.offers import ClaimResult, OfferMode, OfferState
from openslots.domain.statuses import SlotStatus

OUTBOX = cast(Table, OutboxMessage.__table__)


def offer_view(conn: Connection, offer_id: int) -> dict[str, Any] | None:
    """What the claim page shows of one sent offer (None: no such offer was sent): the slot's
    provider, location, time and visit type, and where the slot and this offer stand."""
    row = conn.execute(
        select(
            Offer.slot_id,
            Offer.declined_at,
            Slot.status,
            Slot.claimed_offer_id,
            Slot.starts_at,
            Slot.duration_minutes,
            Slot.visit_type,
            Provider.name.label("provider"),
            Location.name.label("location"),
            Location.timezone,
        )
        .join(Slot, Slot.id == Offer.slot_id)
        .join(Provider, Provider.id == Slot.provider_id)
        .join(Location, Location.id == Slot.location_id)
        .where(Offer.id == offer_id, Offer.state.in_([OfferState.SENT, OfferState.WITHDRAWN]))
    ).first()
    if row is None:
        return None
    view = dict(row._mapping)
    view["starts_at"] = None if view["starts_at"] is None else aware(view["starts_at"])
    view["status"] = SlotStatus(view["status"])
    return view


def decline(conn: Connection, offer_id: int, now: dt.datetime) -> tuple[int | None, ClaimResult]:
    """(slot id, result) of "Not for me" through a valid token naming `offer_id`: recorded once
    (`declined_at` keeps the first time); a Serial slot whose latest group all declined offers
    its next group at once. `invalid` when the offer was never sent."""
    offer = conn.execute(
        select(Offer.slot_id, Offer.state, Slot.claimed_offer_id)
        .join(Slot, Slot.id == Offer.slot_id)
        .where(Offer.id == offer_id)
    ).first()
    if offer is None or offer.state not in (OfferState.SENT, OfferState.WITHDRAWN):
        return (None if offer is None else offer.slot_id), ClaimResult.INVALID
    slot_id = int(offer.slot_id)
    answer = decline_answer(won=offer.claimed_offer_id == offer_id)
    if answer is ClaimResult.DECLINED:
        conn.execute(
            update(Offer)
            .where(Offer.id == offer_id, Offer.declined_at.is_(None))
            .values(declined_at=now)
        )
        _advance_serial(conn, slot_id, now)
    return slot_id, answer


def _advance_serial(conn: Connection, slot_id: int, now: dt.datetime) -> None:
    """Bring a Serial slot's pending groups forward when its latest offered group all said no."""
    slot = conn.execute(select(Slot.mode, Slot.status).where(Slot.id == slot_id)).one()
    if slot.mode != OfferMode.SERIAL or slot.status != SlotStatus.OPEN:
        return
    latest = (
        select(func.max(Offer.group_number))
        .where(Offer.slot_id == slot_id, Offer.state == OfferState.SENT)
        .scalar_subquery()
    )
    declined = [
        at is not None
        for at in conn.execute(
            select(Offer.declined_at).where(
                Offer.slot_id == slot_id,
                Offer.state == OfferState.SENT,
                Offer.group_number == latest,
            )
        ).scalars()
    ]
    if not group_declined(declined):
        return
    pending = Offer.slot_id == slot_id, Offer.state == OfferState.PENDING
    due = sorted({at for at in conn.execute(select(Offer.due_at).where(*pending)).scalars()})
    shift = pull_forward([aware(at) for at in due], now)
    if not shift:
        return
    for at in due:  # earliest first: a moved group never meets one not yet moved
        # Per due time, not `due_at - shift` in SQL: SQLite keeps datetimes as text.
        conn.execute(
            update(Offer).where(*pending, Offer.due_at == at).values(due_at=aware(at) - shift)
        )


def mark_viewed(conn: Connection, offer_id: int, now: dt.datetime) -> int | None:
    """The claim page's beacon: `viewed_at` is set the first time only. Returns the slot id
    (None: no such sent offer)."""
    view = offer_view(conn, offer_id)
    if view is None:
        return None
    conn.execute(
        update(Offer).where(Offer.id == offer_id, Offer.viewed_at.is_(None)).values(viewed_at=now)
    )
    return int(view["slot_id"])


def response_counts(conn: Connection, slot_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per slot: `viewed`, `declined` and `no_one_left` (every offer went out and was
    declined while the slot stays open)."""
    sent = Offer.state == OfferState.SENT
    rows = conn.execute(
        select(
            Offer.slot_id,
            Slot.status,
            func.count().label("offers"),
            func.count(Offer.viewed_at).label("viewed"),
            func.count(Offer.declined_at).label("declined"),
            func.sum(case((Offer.state == OfferState.PENDING, 1), else_=0)).label("pending"),
            func.sum(case((sent & Offer.declined_at.is_(None), 1), else_=0)).label("undeclined"),
        )
        .join(Slot, Slot.id == Offer.slot_id)
        .where(Offer.slot_id.in_(list(slot_ids)))
        .group_by(Offer.slot_id, Slot.status)
    )
    return {
        row.slot_id: {
            "viewed": int(row.viewed),
            "declined": int(row.declined),
            "no_one_left": no_one_left(
                SlotStatus(row.status),
                offers=int(row.offers),
                pending=int(row.pending or 0),
                undeclined_sent=int(row.undeclined or 0),
            ),
        }
        for row in rows
    }


# --- the messages a claim owes --------------------------------------------------------------


def queue_claim_messages(
    conn: Connection,
    now: dt.datetime,
    *,
    notify_taken: bool,
    slot_ids: Sequence[int] | None = None,
) -> int:
    """Write the messages claimed slots still owe (of `slot_ids`, or of every claimed slot that
    has not started): the winner's confirmation on each channel they can be reached on, and,
    with `notify_taken`, "no longer available" on each channel an alert was actually sent on
    to someone who did not decline. Offers never sent get nothing. Returns messages written."""
    reachable = not_opted_out(
        ConnectionRow.provider_id, ConnectionRow.email, ConnectionRow.mobile_phone
    )
    owed = [Slot.status == SlotStatus.CLAIMED, Slot.starts_at > now]
    if slot_ids is not None:
        owed.append(Slot.id.in_(list(slot_ids)))
    alert = aliased(OutboxMessage)
    written = 0
    for channel, address in (
        (Channel.EMAIL, ConnectionRow.email),
        (Channel.SMS, ConnectionRow.mobile_phone),
    ):
        sources = [
            _message_source(OfferOutcome.CONFIRMATION, OutboxKind.SLOT_CONFIRMED, channel, now)
            .join(Slot, Slot.claimed_offer_id == Offer.id)
            .where(*owed, address.is_not(None), reachable)
        ]
        if notify_taken:
            sources.append(
                _message_source(OfferOutcome.UNAVAILABLE, OutboxKind.SLOT_UNAVAILABLE, channel, now)
                .join(Slot, Slot.id == Offer.slot_id)
                .join(alert, alert.offer_id == Offer.id)
                .where(
                    *owed,
                    Offer.id != Slot.claimed_offer_id,
                    Offer.declined_at.is_(None),
                    alert.kind == OutboxKind.SLOT_ALERT.value,
                    alert.channel == channel,
                    alert.status == OutboxStatus.SENT,
                    address.is_not(None),
                    reachable,
                )
            )
        for source in sources:
            written += insert_offer_messages(conn, source.order_by(Offer.id))
    return written


def _message_source(
    outcome: OfferOutcome, kind: OutboxKind, channel: Channel, now: dt.datetime
) -> Select[Any]:
    """One claim message per offer row (joined by the caller)."""
    return offer_message_source(offer_outcome_key_parts(Offer.id, outcome, channel), kind,
                                channel, now)  # fmt: skip
