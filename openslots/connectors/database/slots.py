"""Appointment slots as the EHR's schedule feed reports them: opened (cancelled, deleted,
moved away from) or filled (booked)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from openslots.connectors.database.models import Slot
from openslots.domain.statuses import SlotStatus


@dataclass(frozen=True, slots=True)
class SlotRef:
    """One appointment time of a provider's location, as the schedule feed names it."""

    provider_id: int
    location_id: int
    filler_id: str  # the EHR's appointment id
    start: str  # HL7 DTM as sent
    duration_minutes: int | None

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


def open_slot(conn: Connection, slot: SlotRef, message_id: int, now: dt.datetime) -> bool:
    """The slot is free (cancelled or deleted); False when it already was (a redelivery)."""
    return _record(conn, slot, SlotStatus.OPEN, message_id, {"opened_at": now})


def fill_slot(conn: Connection, slot: SlotRef, message_id: int, now: dt.datetime) -> bool:
    """The slot is booked; False when it already was (a redelivery)."""
    return _record(conn, slot, SlotStatus.FILLED, message_id, {"filled_at": now})


def reopen_moved_slot(
    conn: Connection, provider_id: int, filler_id: str, message_id: int, now: dt.datetime
) -> bool:
    """A rescheduled appointment frees the time it held: its latest filled slot opens again.
    False when the appointment holds no filled slot."""
    previous = conn.execute(
        select(Slot.id)
        .where(
            Slot.filler_id == filler_id,
            Slot.provider_id == provider_id,
            Slot.status == SlotStatus.FILLED,
        )
        .order_by(Slot.id.desc())
    ).first()
    if previous is None:
        return False
    conn.execute(
        update(Slot)
        .where(Slot.id == previous[0])
        .values(status=SlotStatus.OPEN, opened_at=now, message_id=message_id)
    )
    return True


def _record(
    conn: Connection,
    slot: SlotRef,
    status: SlotStatus,
    message_id: int,
    stamp: dict[str, dt.datetime],
) -> bool:
    existing = conn.execute(select(Slot.id, Slot.status).where(Slot.slot_key == slot.key)).first()
    if existing is None:
        conn.execute(
            insert(Slot).values(
                slot_key=slot.key,
                provider_id=slot.provider_id,
                location_id=slot.location_id,
                filler_id=slot.filler_id,
                start=slot.start,
                duration_minutes=slot.duration_minutes,
                status=status,
                message_id=message_id,
                **stamp,
            )
        )
        return True
    if existing.status == status:
        return False
    conn.execute(
        update(Slot)
        .where(Slot.id == existing.id)
        .values(status=status, message_id=message_id, **stamp)
    )
    return True
