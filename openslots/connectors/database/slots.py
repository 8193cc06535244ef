"""Appointment slots: opened by the EHR's schedule feed (cancelled, deleted, moved away from),
by staff or the API; booked in the EHR (closed), claimed through an offer, or closed by staff.

The first valid claim wins with one conditional UPDATE (`... WHERE status = 'open'`): on
PostgreSQL a racing second claim waits for the first's row lock, re-reads the row, and finds
it no longer open, so there is exactly one winner whatever the interleaving.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from openslots.connectors.database import offers as offer_repo
from openslots.connectors.database._dialect import aware
from openslots.connectors.database.eligibility import SlotFacts
from openslots.connectors.database.lifecycle import LifecycleError, audit
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.models import Location, Offer, Slot
from openslots.domain.offers import (
    ClaimResult,
    OfferMode,
    OfferState,
    claim_answer,
)
from openslots.domain.reconcile import (
    RECONCILED_BY_HL7,
    S12Effect,
    reconcile_refusal,
    s12_on_claimed,
)
from openslots.domain.statuses import ClosedReason, SlotStatus


@dataclass(frozen=True, slots=True)
class SlotRef:
    """One appointment time of a provider's location, as the schedule feed names it."""

    provider_id: int
    location_id: int
    filler_id: str  # the EHR's appointment id
    start: str  # HL7 DTM as sent
    duration_minutes: int | None
    visit_type: str | None = None  # what the practice shows (not part of the key)

    @property
    def key(self) -> str:
        """Unique per appointment and time: a moved appointment is a new slot."""
        return "|".join(
            [
                self.filler_id,
                str(self.provider_id),
                str(self.location_id),
                self.start,
                str(self.duration_minutes or ""),
            ]
        )


@dataclass(frozen=True, slots=True)
class NewSlot:
    """A slot to record, with how it is offered."""

    slot_key: str
    provider_id: int
    location_id: int
    filler_id: str
    start: str  # as given
    starts_at: dt.datetime
    duration_minutes: int | None
    visit_type: str | None = None
    mode: OfferMode = OfferMode.BLAST
    group_size: int = 1
    timeout_minutes: int = 0


def location_timezone(conn: Connection, location_id: int) -> str | None:
    return conn.execute(
        select(Location.timezone).where(Location.id == location_id)
    ).scalar_one_or_none()


def insert_slot(
    conn: Connection,
    slot: NewSlot,
    *,
    too_late: bool,
    message_id: int | None,
    now: dt.datetime,
) -> int:
    """Record a slot: open, or (arriving within the lead time) closed with `lead_time`."""
    values: dict[str, Any] = {
        "slot_key": slot.slot_key,
        "provider_id": slot.provider_id,
        "location_id": slot.location_id,
        "filler_id": slot.filler_id,
        "start": slot.start[:32],
        "starts_at": slot.starts_at,
        "duration_minutes": slot.duration_minutes,
        "visit_type": slot.visit_type,
        "mode": slot.mode,
        "group_size": slot.group_size,
        "timeout_minutes": slot.timeout_minutes,
        "message_id": message_id,
        "opened_at": now,
        "status": SlotStatus.CLOSED if too_late else SlotStatus.OPEN,
        "closed_reason": ClosedReason.LEAD_TIME if too_late else None,
        "closed_at": now if too_late else None,
    }
    return int(conn.execute(insert(Slot).values(**values).returning(Slot.id)).scalar_one())


def slot_facts(
    conn: Connection, slot_id: int, *, max_per_week: int, default_timezone: str
) -> SlotFacts | None:
    """What the slot adds to the alert rule (windows, contact cap); None without a start."""
    row = conn.execute(
        select(Slot.starts_at, Slot.duration_minutes, Slot.opened_at, Location.timezone)
        .join(Location, Location.id == Slot.location_id)
        .where(Slot.id == slot_id)
    ).first()
    if row is None or row.starts_at is None:
        return None
    starts_at = aware(row.starts_at)
    opened_at = starts_at if row.opened_at is None else aware(row.opened_at)
    return SlotFacts(
        slot_id,
        starts_at,
        row.duration_minutes,
        row.timezone or default_timezone,
        opened_at,
        max_per_week,
    )


def offer_slot(
    conn: Connection,
    slot_id: int,
    now: dt.datetime,
    *,
    max_per_week: int,
    default_timezone: str,
) -> int:
    """Write the offers of an open slot (idempotent); returns the eligible count.
    `max_per_week`: OPENSLOTS_ALERT_MAX_PER_WEEK; `default_timezone`: a location's without one."""
    row = conn.execute(
        select(
            Slot.status,
            Slot.provider_id,
            Slot.location_id,
            Slot.mode,
            Slot.group_size,
            Slot.timeout_minutes,
        ).where(Slot.id == slot_id)
    ).one()
    facts = slot_facts(conn, slot_id, max_per_week=max_per_week, default_timezone=default_timezone)
    if row.status != SlotStatus.OPEN or facts is None:
        return 0
    return offer_repo.create_offers(
        conn,
        slot_id,
        row.provider_id,
        row.location_id,
        OfferMode(row.mode),
        row.group_size,
        row.timeout_minutes,
        now,
        facts,
    )


# --- the schedule feed ----------------------------------------------------------------------


def open_from_feed(
    conn: Connection,
    slot: SlotRef,
    starts_at: dt.datetime,
    message_id: int,
    now: dt.datetime,
    *,
    too_late: bool,
) -> tuple[bool, int | None]:
    """S15/S17: the time is free. Returns (changed, id of a slot now open to offer); unchanged
    when the slot already was open (a redelivery) or was claimed."""
    existing = conn.execute(select(Slot.id, Slot.status).where(Slot.slot_key == slot.key)).first()
    if existing is None:
        new = NewSlot(
            slot.key,
            slot.provider_id,
            slot.location_id,
            slot.filler_id,
            slot.start,
            starts_at,
            slot.duration_minutes,
            slot.visit_type,
        )
        slot_id = insert_slot(conn, new, too_late=too_late, message_id=message_id, now=now)
        return True, None if too_late else slot_id
    if existing.status != SlotStatus.CLOSED:
        return False, None
    return True, _reopen(conn, existing.id, message_id, now, too_late=too_late)


def _reopen(
    conn: Connection, slot_id: int, message_id: int, now: dt.datetime, *, too_late: bool
) -> int | None:
    if too_late:
        conn.execute(
            update(Slot)
            .where(Slot.id == slot_id)
            .values(closed_reason=ClosedReason.LEAD_TIME, message_id=message_id, closed_at=now)
        )
        return None
    conn.execute(
        update(Slot)
        .where(Slot.id == slot_id)
        .values(status=SlotStatus.OPEN, closed_reason=None, opened_at=now, message_id=message_id)
    )
    return slot_id


def book_from_feed(
    conn: Connection,
    slot: SlotRef,
    starts_at: dt.datetime,
    message_id: int,
    now: dt.datetime,
    patient_mrn: str = "",
) -> tuple[bool, S12Effect | None]:
    """S12: that time is booked in the EHR. The slot of this appointment, and any other slot
    still open for the same provider, location and start, close (`booked_in_ehr`) and withdraw
    their unsent offers; a claimed slot stays claimed: the S12 reconciles it when its patient
    has the winner's MRN, else it is recorded as a conflict (never applied over the claim).
    Returns (changed: False for a redelivery, what it did to a claimed slot)."""
    effect = _book_claimed(conn, slot, starts_at, message_id, now, patient_mrn)
    existing = conn.execute(
        select(Slot.id, Slot.status, Slot.closed_reason).where(Slot.slot_key == slot.key)
    ).first()
    changed = False
    if existing is None:
        new = NewSlot(
            slot.key,
            slot.provider_id,
            slot.location_id,
            slot.filler_id,
            slot.start,
            starts_at,
            slot.duration_minutes,
        )
        slot_id = insert_slot(conn, new, too_late=False, message_id=message_id, now=now)
        conn.execute(
            update(Slot)
            .where(Slot.id == slot_id)
            .values(
                status=SlotStatus.CLOSED,
                closed_reason=ClosedReason.BOOKED_IN_EHR,
                closed_at=None,
                filled_at=now,
            )
        )
        changed = True
    elif existing.status == SlotStatus.OPEN or (
        existing.status == SlotStatus.CLOSED
        and existing.closed_reason != ClosedReason.BOOKED_IN_EHR
    ):
        changed = True
    same_time = select(Slot.id).where(
        Slot.status == SlotStatus.OPEN,
        Slot.provider_id == slot.provider_id,
        Slot.location_id == slot.location_id,
        (Slot.slot_key == slot.key) | (Slot.starts_at == starts_at),
    )
    for slot_id in list(conn.execute(same_time).scalars()):
        close(conn, slot_id, ClosedReason.BOOKED_IN_EHR, now)
        conn.execute(update(Slot).where(Slot.id == slot_id).values(filled_at=now))
    if existing is not None and existing.status == SlotStatus.CLOSED and changed:
        conn.execute(
            update(Slot)
            .where(Slot.id == existing.id)
            .values(closed_reason=ClosedReason.BOOKED_IN_EHR, filled_at=now, message_id=message_id)
        )
    return changed, effect


def _book_claimed(
    conn: Connection,
    slot: SlotRef,
    starts_at: dt.datetime,
    message_id: int,
    now: dt.datetime,
    patient_mrn: str,
) -> S12Effect | None:
    """An S12 at a claimed slot's time (same provider and location): reconcile or conflict."""
    claimed = conn.execute(
        select(Slot.id, Slot.reconciled_at, Slot.conflict_message_id, ConnectionRow.mrn)
        .join(Offer, Offer.id == Slot.claimed_offer_id)
        .join(ConnectionRow, ConnectionRow.id == Offer.connection_id)
        .where(
            Slot.status == SlotStatus.CLAIMED,
            Slot.provider_id == slot.provider_id,
            Slot.location_id == slot.location_id,
            (Slot.slot_key == slot.key) | (Slot.starts_at == starts_at),
        )
        .order_by(Slot.id)
    ).all()
    effect = None
    for row in claimed:
        found = s12_on_claimed(row.mrn, patient_mrn, reconciled=row.reconciled_at is not None)
        if found is S12Effect.RECONCILE:
            conn.execute(
                update(Slot)
                .where(Slot.id == row.id, Slot.reconciled_at.is_(None))
                .values(reconciled_at=now, reconciled_by=RECONCILED_BY_HL7)
            )
        elif found is S12Effect.CONFLICT and row.conflict_message_id != message_id:
            # The latest conflicting booking is the one a scheduler must look at.
            conn.execute(
                update(Slot)
                .where(Slot.id == row.id)
                .values(conflict_message_id=message_id, conflict_at=now)
            )
        else:
            continue
        effect = found
    return effect


def reopen_moved_slot(
    conn: Connection,
    provider_id: int,
    filler_id: str,
    message_id: int,
    now: dt.datetime,
    *,
    lead_cutoff: dt.datetime,
) -> tuple[bool, int | None]:
    """S13: a rescheduled appointment frees the time it held: its latest booked slot opens
    again. Returns (reopened, id to offer); (False, None) when it holds no booked slot."""
    previous = conn.execute(
        select(Slot.id, Slot.starts_at)
        .where(
            Slot.filler_id == filler_id,
            Slot.provider_id == provider_id,
            Slot.status == SlotStatus.CLOSED,
            Slot.closed_reason == ClosedReason.BOOKED_IN_EHR,
        )
        .order_by(Slot.id.desc())
    ).first()
    if previous is None:
        return False, None
    starts_at = previous.starts_at
    if starts_at is not None and starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=dt.UTC)
    too_late = starts_at is None or starts_at < lead_cutoff
    return True, _reopen(conn, previous.id, message_id, now, too_late=too_late)


# --- claims and closing ---------------------------------------------------------------------


def claim(conn: Connection, offer_id: int, now: dt.datetime) -> tuple[int | None, ClaimResult]:
    """(slot id, result) of a claim through a valid token naming `offer_id`."""
    offer = conn.execute(
        select(Offer.slot_id, Offer.state, Offer.declined_at).where(Offer.id == offer_id)
    ).first()
    if offer is None or offer.state not in (OfferState.SENT, OfferState.WITHDRAWN):
        return (None if offer is None else offer.slot_id), ClaimResult.INVALID
    slot_id = int(offer.slot_id)
    if offer.declined_at is not None:  # "Not for me" is final for this patient and slot
        return slot_id, ClaimResult.DECLINED
    conn.execute(
        update(Offer).where(Offer.id == offer_id).values(claim_attempts=Offer.claim_attempts + 1)
    )
    won = conn.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.status == SlotStatus.OPEN, Slot.starts_at > now)
        .values(status=SlotStatus.CLAIMED, claimed_offer_id=offer_id, claimed_at=now)
    )
    if won.rowcount == 1:
        offer_repo.withdraw(conn, slot_id)
        return slot_id, ClaimResult.WON
    row = conn.execute(select(Slot.status, Slot.claimed_offer_id).where(Slot.id == slot_id)).one()
    return slot_id, claim_answer(
        SlotStatus(row.status), claimed_offer_id=row.claimed_offer_id, offer_id=offer_id
    )


def reconcile(
    conn: Connection, slot_id: int, actor: str, now: dt.datetime
) -> dict[str, Any] | None:
    """A scheduler moved the claimed slot into the EHR's calendar: reconciled_at / _by, audited
    (`audit --slot ID`). Reconciling again changes nothing (`changed` False). None: no slot;
    LifecycleError for a slot that is not claimed."""
    row = conn.execute(
        select(Slot.status, Slot.reconciled_at, Slot.reconciled_by).where(Slot.id == slot_id)
    ).first()
    if row is None:
        return None
    refusal = reconcile_refusal(SlotStatus(row.status))
    if refusal:
        raise LifecycleError(refusal)
    changed = row.reconciled_at is None
    if changed:
        conn.execute(
            update(Slot)
            .where(Slot.id == slot_id, Slot.reconciled_at.is_(None))
            .values(reconciled_at=now, reconciled_by=actor[:100])
        )
        audit(conn, "slot", slot_id, "reconciled", None, "reconciled", actor)
    at, by = (now, actor[:100]) if changed else (row.reconciled_at, row.reconciled_by)
    return {
        "slot_id": slot_id,
        "changed": changed,
        "reconciled_at": aware(at).isoformat(),
        "reconciled_by": by,
    }


def close(conn: Connection, slot_id: int, reason: ClosedReason, now: dt.datetime) -> bool:
    """Close an open slot and withdraw what was not sent; False when it was not open."""
    result = conn.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.status == SlotStatus.OPEN)
        .values(status=SlotStatus.CLOSED, closed_reason=reason, closed_at=now)
    )
    if result.rowcount != 1:
        return False
    offer_repo.withdraw(conn, slot_id)
    return True


def slot_state(conn: Connection, slot_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(Slot.id, Slot.status, Slot.closed_reason, Slot.mode).where(Slot.id == slot_id)
    ).first()
    return None if row is None else dict(row._mapping)


# --- the practice's settings that shape offers ------------------------------------------------


def set_location_timezone(conn: Connection, location_id: int, timezone: str | None) -> None:
    """The location's wall clock (slot starts without an offset, quiet hours)."""
    conn.execute(update(Location).where(Location.id == location_id).values(timezone=timezone))


def set_alert_order(conn: Connection, connection_id: int, order: int | None) -> bool:
    """The connection's place in the practice's Serial order; False when there is none."""
    result = conn.execute(
        update(ConnectionRow).where(ConnectionRow.id == connection_id).values(alert_order=order)
    )
    return result.rowcount == 1
