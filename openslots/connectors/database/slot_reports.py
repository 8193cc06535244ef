"""What a practice reads about its slots: why each connection was or was not alerted
(`slots explain`), the slot list with its offers, claims and reconciliation (`slots list`), and
the claimed slots not yet in the EHR's calendar (the daily artifact)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, select

from openslots.connectors.database import offer_responses
from openslots.connectors.database._dialect import aware
from openslots.connectors.database.eligibility import alert_reasons
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.models import Offer, Provider, Slot
from openslots.connectors.database.slots import slot_facts
from openslots.domain.offers import (
    OfferState,
    explain,
)
from openslots.domain.statuses import ClosedReason, SlotStatus


def explain_slot(
    conn: Connection, slot_id: int, *, max_per_week: int, default_timezone: str
) -> list[dict[str, Any]] | None:
    """Every connection of the slot's provider with its outcome and reason (None: no slot);
    windows and the contact cap are judged as when the slot opened."""
    row = conn.execute(
        select(
            Slot.provider_id,
            Slot.location_id,
            Slot.status,
            Slot.closed_reason,
            Slot.claimed_offer_id,
        ).where(Slot.id == slot_id)
    ).first()
    if row is None:
        return None
    facts = slot_facts(conn, slot_id, max_per_week=max_per_week, default_timezone=default_timezone)
    reasons = alert_reasons(conn, row.provider_id, row.location_id, facts)
    offers = {
        o.connection_id: o
        for o in conn.execute(
            select(
                Offer.id, Offer.connection_id, Offer.state, Offer.reason, Offer.declined_at
            ).where(Offer.slot_id == slot_id)
        )
    }
    clients = dict(
        conn.execute(
            select(ConnectionRow.id, ConnectionRow.client_id).where(
                ConnectionRow.provider_id == row.provider_id
            )
        ).all()
    )
    result = []
    for connection_id in sorted(reasons):
        offer = offers.get(connection_id)
        outcome, reason = explain(
            reasons[connection_id],
            offer_state=None if offer is None else OfferState(offer.state),
            offer_reason=None if offer is None else offer.reason,
            won=offer is not None and offer.id == row.claimed_offer_id,
            slot_status=SlotStatus(row.status),
            closed_reason=None if row.closed_reason is None else ClosedReason(row.closed_reason),
            declined=offer is not None and offer.declined_at is not None,
        )
        result.append(
            {
                "connection_id": connection_id,
                "client_id": clients.get(connection_id),
                "outcome": str(outcome),
                "reason": str(reason),
            }
        )
    return result


def list_slots(
    conn: Connection,
    status: SlotStatus | None = None,
    provider_id: int | None = None,
    *,
    unreconciled_before: dt.datetime | None = None,
    conflicts: bool = False,
) -> list[dict[str, Any]]:
    """Slots, newest first, with offers sent, claims tried and the winner's connection id, and
    whether the claim reached the EHR (reconciled_at/_by, conflict_at/_message_id). Only claimed
    slots not reconciled by `unreconciled_before` (claimed before it), or only slots with a
    conflict, when asked."""
    sent = func.sum(case((Offer.state == OfferState.SENT, 1), else_=0))
    per_slot = (
        select(
            Offer.slot_id,
            sent.label("offers_sent"),
            func.sum(Offer.claim_attempts).label("claims_tried"),
        )
        .group_by(Offer.slot_id)
        .subquery()
    )
    winner = select(Offer.connection_id).where(Offer.id == Slot.claimed_offer_id).scalar_subquery()
    query = (
        select(
            Slot.id,
            Slot.provider_id,
            Slot.location_id,
            Slot.starts_at,
            Slot.duration_minutes,
            Slot.visit_type,
            Slot.status,
            Slot.closed_reason,
            Slot.mode,
            func.coalesce(per_slot.c.offers_sent, 0).label("offers_sent"),
            func.coalesce(per_slot.c.claims_tried, 0).label("claims_tried"),
            winner.label("winner_connection_id"),
            Slot.reconciled_at,
            Slot.reconciled_by,
            Slot.conflict_at,
            Slot.conflict_message_id,
        )
        .outerjoin(per_slot, per_slot.c.slot_id == Slot.id)
        .order_by(Slot.id.desc())
    )
    if status is not None:
        query = query.where(Slot.status == status)
    if provider_id is not None:
        query = query.where(Slot.provider_id == provider_id)
    if unreconciled_before is not None:
        query = query.where(_unreconciled(unreconciled_before))
    if conflicts:
        query = query.where(Slot.conflict_message_id.is_not(None))
    rows = []
    for found in conn.execute(query):
        item = dict(found._mapping)
        starts_at = item["starts_at"]
        if starts_at is not None and starts_at.tzinfo is None:
            starts_at = starts_at.replace(tzinfo=dt.UTC)
        item["starts_at"] = None if starts_at is None else starts_at.isoformat()
        item["status"] = str(item["status"])
        item["closed_reason"] = (
            None if item["closed_reason"] is None else str(item["closed_reason"])
        )
        item["mode"] = str(item["mode"])
        for name in ("reconciled_at", "conflict_at"):
            item[name] = None if item[name] is None else aware(item[name]).isoformat()
        item["offers_sent"] = int(item["offers_sent"])
        item["claims_tried"] = int(item["claims_tried"])
        rows.append(item)
    responses = offer_responses.response_counts(conn, [row["id"] for row in rows])
    for item in rows:
        item |= responses.get(item["id"], {"viewed": 0, "declined": 0, "no_one_left": False})
    return rows


def unreconciled_per_provider(conn: Connection, cutoff: dt.datetime) -> dict[str, int]:
    """Provider name -> claimed slots claimed before `cutoff` and not reconciled (one query)."""
    rows = conn.execute(
        select(Provider.name, func.count(Slot.id))
        .join(Provider, Provider.id == Slot.provider_id)
        .where(_unreconciled(cutoff))
        .group_by(Provider.name)
        .order_by(Provider.name)
    )
    return {name: int(count) for name, count in rows}


def _unreconciled(cutoff: dt.datetime) -> ColumnElement[bool]:
    return and_(
        Slot.status == SlotStatus.CLAIMED,
        Slot.reconciled_at.is_(None),
        Slot.claimed_at <= cutoff,
    )
