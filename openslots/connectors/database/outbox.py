"""The message outbox: claim under a lease, read what to send, record each outcome.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so several dispatch workers share one
outbox without sending a message twice; SQLite serialises writers by itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    Table,
    and_,
    case,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast

from openslots.connectors.database._dialect import skip_locked
from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.models import (
    Channel,
    Client,
    Invitation,
    Location,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Provider,
)
from openslots.domain import clock
from openslots.domain.messages import KEY_SEPARATOR, invitation_key_parts
from openslots.domain.statuses import InvitationStatus

OUTBOX = cast(Table, OutboxMessage.__table__)
FIRST_ATTEMPT = 1


def key_sql(parts: Sequence[object]) -> ColumnElement[str]:
    """The SQL twin of `KEY_SEPARATOR.join(map(str, parts))` (see domain.messages): columns
    among `parts` are cast to text, the strings and numbers between them bound as one string."""
    pieces: list[ColumnElement[str]] = []
    run = ""
    for index, part in enumerate(parts):
        run += KEY_SEPARATOR if index else ""
        if isinstance(part, str | int):
            run += str(part)
        else:
            if run:
                pieces.append(literal(run, String))
            pieces.append(sql_cast(part, String(20)))
            run = ""
    if run:
        pieces.append(literal(run, String))
    key = pieces[0]
    for piece in pieces[1:]:
        key = key + piece
    return key


def queue_first_invitation_messages(conn: Connection, batch_id: int, now: dt.datetime) -> None:
    """The first messages of every invitation a roster batch queued, in one INSERT ... SELECT:
    an email when the client has an address, an SMS when a mobile phone."""

    def bound(name: str, value: object) -> ColumnElement[object]:
        return literal(value, OUTBOX.c[name].type)

    columns = ("idempotency_key", "kind", "channel", "invitation_id", "status", "attempts")
    per_channel = [
        select(
            key_sql(invitation_key_parts(Invitation.id, FIRST_ATTEMPT, channel)),
            bound("kind", OutboxKind.INVITATION),
            bound("channel", channel),
            Invitation.id,
            bound("status", OutboxStatus.PENDING),
            bound("attempts", 0),
            bound("created_at", now),
        )
        .select_from(Invitation)
        .join(Client, Client.id == Invitation.client_id)
        .where(Invitation.batch_id == batch_id, address.is_not(None))
        for channel, address in ((Channel.EMAIL, Client.email), (Channel.SMS, Client.mobile_phone))
    ]
    conn.execute(
        insert(OUTBOX).from_select(
            [*columns, "created_at"], union_all(*per_channel), include_defaults=False
        )
    )


def expire_leases(conn: Connection) -> int:
    """Messages whose sender died mid-send may have gone out: mark them unknown, not pending."""
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.lease_expires_at < clock.now(),
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
    ids = list(conn.execute(skip_locked(conn, pick)).scalars())
    if ids:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status=OutboxStatus.SENDING,
                attempts=OutboxMessage.attempts + 1,
                lease_expires_at=clock.now() + dt.timedelta(seconds=lease_seconds),
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
    now = clock.now()
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
