"""The message outbox: claim under a lease, read what to send, record each outcome.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so several dispatch workers share one
outbox without sending a message twice; SQLite serialises writers by itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select, update

from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.models import (
    Channel,
    Client,
    Invitation,
    Location,
    OutboxMessage,
    OutboxStatus,
    Provider,
)
from openslots.domain.statuses import InvitationStatus


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def expire_leases(conn: Connection) -> int:
    """Messages whose sender died mid-send may have gone out: mark them unknown, not pending."""
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.lease_expires_at < _now()
        )
        .values(status=OutboxStatus.UNKNOWN, last_error="lease expired during send")
    )
    return int(result.rowcount or 0)


def claim(conn: Connection, limit: int, lease_seconds: int) -> list[int]:
    """Take up to `limit` pending messages, oldest first, under a lease."""
    pick = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == OutboxStatus.PENDING)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(conn.execute(pick).scalars())
    if ids:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status=OutboxStatus.SENDING,
                attempts=OutboxMessage.attempts + 1,
                lease_expires_at=_now() + dt.timedelta(seconds=lease_seconds),
            )
        )
    return ids


@dataclass(frozen=True, slots=True)
class PendingInvitation:
    """What a sender needs for one claimed invitation message (patient data: stays in-task)."""

    outbox_id: int
    key: str
    channel: Channel
    email: str
    mobile_phone: str | None
    first_name: str
    last_name: str
    guardian_first_name: str | None
    guardian_last_name: str | None
    provider: str
    location: str
    opted_out: bool


def load_invitations(conn: Connection, ids: Sequence[int]) -> list[PendingInvitation]:
    opted_out = contact_opted_out(Invitation.provider_id, Client.email, Client.mobile_phone)
    rows = conn.execute(
        select(
            OutboxMessage.id.label("outbox_id"),
            OutboxMessage.idempotency_key.label("key"),
            OutboxMessage.channel,
            Client.email,
            Client.mobile_phone,
            Client.first_name,
            Client.last_name,
            Client.guardian_first_name,
            Client.guardian_last_name,
            Provider.name.label("provider"),
            Location.name.label("location"),
            opted_out.label("opted_out"),
        )
        .join(Invitation, Invitation.id == OutboxMessage.invitation_id)
        .join(Client, Client.id == Invitation.client_id)
        .join(Provider, Provider.id == Invitation.provider_id)
        .join(Location, Location.id == Invitation.location_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    ).all()
    return [PendingInvitation(**row._asdict()) for row in rows]


def record_sent(conn: Connection, ids: Sequence[int]) -> None:
    """Mark messages sent; an invitation whose email went out shows Sent (seed: the date is the
    last time an invitation was sent)."""
    if not ids:
        return
    now = _now()
    conn.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == OutboxStatus.SENDING)
        .values(status=OutboxStatus.SENT, sent_at=now, lease_expires_at=None, last_error=None)
    )
    sent_email = select(OutboxMessage.invitation_id).where(
        OutboxMessage.id.in_(ids), OutboxMessage.channel == Channel.EMAIL
    )
    conn.execute(
        update(Invitation)
        .where(Invitation.id.in_(sent_email))
        .values(
            status=case(
                (Invitation.status == InvitationStatus.QUEUED, InvitationStatus.SENT.value),
                else_=Invitation.status,
            ),
            first_sent_at=func.coalesce(Invitation.first_sent_at, now),
            last_sent_at=now,
            send_count=Invitation.send_count + 1,
            updated_at=now,
        )
    )


def record_outcome(conn: Connection, outbox_id: int, status: OutboxStatus, reason: str) -> None:
    conn.execute(
        update(OutboxMessage)
        .where(and_(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.SENDING))
        .values(status=status, last_error=reason, lease_expires_at=None)
    )


def status_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.channel, OutboxMessage.status
        )
    ).all()
    return {f"{channel}:{status}": int(count) for channel, status, count in rows}
