"""Opt-outs: an address that never hears from a provider again, on any channel, and the opt-in
that reverses it. Every change is audited with its source in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.lifecycle import (
    LifecycleError,
    audit,
    set_invitation_status,
)
from openslots.connectors.database.models import (
    Channel,
    Client,
    Invitation,
    OptOut,
    OutboxMessage,
    OutboxStatus,
)
from openslots.domain import clock
from openslots.domain import lifecycle as rules
from openslots.domain.statuses import InvitationStatus


def opt_out(
    conn: Connection,
    provider_id: int,
    channel: Channel,
    address: str,
    actor: str,
    reason: str | None = None,
) -> int:
    """Never contact this address for this provider again, on any channel. Returns the number
    of invitations now Opted-Out; their unsent messages are cancelled."""
    exists = _opt_out_id(conn, provider_id, channel, address)
    if exists is None:
        opt_out_id = conn.execute(
            insert(OptOut)
            .values(
                provider_id=provider_id, channel=channel, address=address, created_at=clock.now()
            )
            .returning(OptOut.id)
        ).scalar_one()
        audit(conn, "opt_out", opt_out_id, "opt-out", None, channel, actor, reason)
    column = _contact_column(channel)
    invitations = conn.execute(
        select(Invitation.id, Invitation.status)
        .join(Client, Client.id == Invitation.client_id)
        .where(Invitation.provider_id == provider_id, column == address)
        .order_by(Invitation.id)
    ).all()
    ids = []
    for inv in invitations:
        current = InvitationStatus(inv.status)
        change = rules.after_opt_out(current)
        if change is None:
            continue
        new, remembered = change
        conn.execute(
            update(Invitation)
            .where(Invitation.id == inv.id)
            .values(status_before_opt_out=remembered)
        )
        set_invitation_status(conn, inv.id, current, new, actor, reason or "opted out")
        ids.append(inv.id)
    if ids:
        conn.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.invitation_id.in_(ids), OutboxMessage.status == OutboxStatus.PENDING
            )
            .values(status=OutboxStatus.CANCELLED, last_error="recipient opted out")
        )
    return len(ids)


def _opt_out_id(conn: Connection, provider_id: int, channel: Channel, address: str) -> int | None:
    found = conn.execute(
        select(OptOut.id).where(
            OptOut.provider_id == provider_id, OptOut.channel == channel, OptOut.address == address
        )
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _contact_column(channel: Channel) -> Any:
    """The client column an address of this channel is compared with."""
    return Client.email if channel is Channel.EMAIL else Client.mobile_phone


def opt_in(
    conn: Connection,
    provider_id: int,
    channel: Channel,
    address: str,
    actor: str,
    reason: str | None = None,
) -> int:
    """Reverse an opt-out: invitations return to the status the opt-out replaced."""
    opt_out_id = _opt_out_id(conn, provider_id, channel, address)
    if opt_out_id is None:
        raise LifecycleError("that address has not opted out of this provider")
    conn.execute(delete(OptOut).where(OptOut.id == opt_out_id))
    audit(conn, "opt_out", opt_out_id, "opt-in", channel, None, actor, reason)
    still_out = contact_opted_out(provider_id, Client.email, Client.mobile_phone)
    column = _contact_column(channel)
    invitations = conn.execute(
        select(
            Invitation.id,
            Invitation.status,
            Invitation.status_before_opt_out,
            still_out.label("still_opted_out"),
        )
        .join(Client, Client.id == Invitation.client_id)
        .where(Invitation.provider_id == provider_id, column == address)
        .order_by(Invitation.id)
    ).all()
    restored = 0
    for inv in invitations:
        current = InvitationStatus(inv.status)
        before = inv.status_before_opt_out
        new = rules.after_opt_in(
            current,
            None if before is None else InvitationStatus(before),
            still_opted_out=bool(inv.still_opted_out),
        )
        if new is None:
            continue
        set_invitation_status(conn, inv.id, current, new, actor, reason or "opted in")
        conn.execute(
            update(Invitation).where(Invitation.id == inv.id).values(status_before_opt_out=None)
        )
        restored += 1
    return restored
