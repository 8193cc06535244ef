"""Connections and invitations over their life: status, priority and MRN changes, requests,
resends and approvals. Every change writes an audit event in the same transaction.

Registrations (the Date of Birth Match) live in `registrations.py`, opt-outs in `opt_outs.py`;
both build on the invitation and approval steps here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.models import (
    AuditEvent,
    Client,
    Invitation,
    OutboxMessage,
    OutboxStatus,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.providers import location_id_for as location_id_for
from openslots.connectors.database.providers import provider_id_for as provider_id_for
from openslots.domain import clock
from openslots.domain import connections as connection_rules
from openslots.domain import lifecycle as rules
from openslots.domain.messages import invitation_key, invitation_key_prefix
from openslots.domain.statuses import ConnectionStatus, InvitationStatus
from openslots.errors import OpenslotsError


class LifecycleError(OpenslotsError):
    """A change the seed's rules do not permit; the message says why (no patient data)."""


def _refused(invitation_id: int, refusal: rules.Refusal) -> LifecycleError:
    return LifecycleError(f"invitation {invitation_id} {refusal.reason}")


def audit(
    conn: Connection,
    entity: str,
    entity_id: int,
    action: str,
    from_value: object,
    to_value: object,
    actor: str,
    reason: str | None = None,
) -> None:
    conn.execute(
        insert(AuditEvent).values(
            entity=entity,
            entity_id=entity_id,
            action=action,
            from_value=None if from_value is None else str(from_value),
            to_value=None if to_value is None else str(to_value),
            actor=actor,
            reason=reason,
            created_at=clock.now(),
        )
    )


# --- connections ---------------------------------------------------------------------------


def _connection(conn: Connection, connection_id: int) -> Any:
    row = conn.execute(
        select(
            ConnectionRow.id, ConnectionRow.status, ConnectionRow.mrn, ConnectionRow.priority
        ).where(ConnectionRow.id == connection_id)
    ).one_or_none()
    if row is None:
        raise LifecycleError(f"no connection {connection_id}")
    return row


def set_connection_status(
    conn: Connection,
    connection_id: int,
    status: ConnectionStatus,
    actor: str,
    reason: str | None = None,
) -> ConnectionStatus:
    """Set a connection's status; approving connects the client's invitation there."""
    row = conn.execute(
        select(ConnectionRow.status, ConnectionRow.client_id, ConnectionRow.location_id).where(
            ConnectionRow.id == connection_id
        )
    ).one_or_none()
    if row is None:
        raise LifecycleError(f"no connection {connection_id}")
    old = ConnectionStatus(row.status)
    if not connection_rules.status_changes(old, status):
        return old
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(status=status, updated_at=clock.now())
    )
    audit(conn, "connection", connection_id, "status", old, status, actor, reason)
    if connection_rules.approval_connects_invitation(status, has_client=row.client_id is not None):
        _connect_invitation(conn, row.client_id, row.location_id, actor)
    return old


def _connect_invitation(conn: Connection, client_id: int, location_id: int, actor: str) -> None:
    """Seed: Connected = the client has been Approved on the Connections screen."""
    invitation = conn.execute(
        select(Invitation.id, Invitation.status).where(
            Invitation.client_id == client_id, Invitation.location_id == location_id
        )
    ).one_or_none()
    if invitation is None:
        return
    current = InvitationStatus(invitation.status)
    new = rules.status_after_approval(current)
    if new is current:
        return
    set_invitation_status(conn, invitation.id, current, new, actor, "connection approved")
    _mark_others_new(conn, invitation.id, actor)


def _mark_others_new(conn: Connection, invitation_id: int, actor: str) -> None:
    """Seed: New = a person with this email is Connected with the provider (a guardian whose
    dependent connected); those invitations cannot be resent."""
    provider_id, email = conn.execute(
        select(Invitation.provider_id, Client.email)
        .join(Client, Client.id == Invitation.client_id)
        .where(Invitation.id == invitation_id)
    ).one()
    if not email:
        return
    others = conn.execute(
        select(Invitation.id, Invitation.status)
        .join(Client, Client.id == Invitation.client_id)
        .where(
            Invitation.provider_id == provider_id,
            Client.email == email,
            Invitation.id != invitation_id,
        )
        .order_by(Invitation.id)
    ).all()
    for other in others:
        if not rules.becomes_new(InvitationStatus(other.status)):
            continue
        set_invitation_status(
            conn,
            other.id,
            InvitationStatus(other.status),
            InvitationStatus.NEW,
            actor,
            "another person with this email is Connected",
        )


def set_priority(
    conn: Connection, connection_id: int, label: str | None, labels: list[str], actor: str
) -> None:
    """Priority is the practice's own label; it never changes who is alerted."""
    refusal = connection_rules.priority_refusal(label, labels)
    if refusal:
        raise LifecycleError(refusal)
    old = _connection(conn, connection_id).priority
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(priority=label, updated_at=clock.now())
    )
    audit(conn, "connection", connection_id, "priority", old, label, actor)


def set_mrn(
    conn: Connection, connection_id: int, mrn: str | None, actor: str, reason: str | None = None
) -> None:
    """Set (or clear) the Client ID / MRN an integrated provider's alerts require."""
    mrn = connection_rules.clean_mrn(mrn)
    refusal = connection_rules.mrn_refusal(mrn)
    if refusal:
        raise LifecycleError(refusal)
    old = _connection(conn, connection_id).mrn
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(mrn=mrn, updated_at=clock.now())
    )
    audit(conn, "connection", connection_id, "mrn", old, mrn, actor, reason)


def set_availability(conn: Connection, connection_id: int, windows: str | None, actor: str) -> None:
    """The connection's availability windows, canonical text from domain.availability (None:
    any time); only slots they hold are offered to it."""
    _connection(conn, connection_id)
    old = conn.execute(
        select(ConnectionRow.availability).where(ConnectionRow.id == connection_id)
    ).scalar_one()
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(availability=windows, updated_at=clock.now())
    )
    audit(conn, "connection", connection_id, "availability", old, windows, actor)


# --- invitations ---------------------------------------------------------------------------


def set_invitation_status(
    conn: Connection,
    invitation_id: int,
    old: InvitationStatus,
    new: InvitationStatus,
    actor: str,
    reason: str | None = None,
) -> None:
    if old is new:
        return
    conn.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id)
        .values(status=new, updated_at=clock.now())
    )
    audit(conn, "invitation", invitation_id, "status", old, new, actor, reason)


def invitation_status(conn: Connection, invitation_id: int) -> InvitationStatus:
    status = conn.execute(
        select(Invitation.status).where(Invitation.id == invitation_id)
    ).scalar_one_or_none()
    if status is None:
        raise LifecycleError(f"no invitation {invitation_id}")
    return InvitationStatus(status)


def resend(conn: Connection, invitation_id: int, actor: str) -> str:
    """Record that the invitation is owed another attempt (email, and SMS when there is a
    phone): the next dispatch turns it into messages. Returns the attempt key prefix. Refused,
    with the seed's reason, for Opted-Out, Connected and New, and while a message is waiting."""
    row = conn.execute(
        select(Invitation.status, Invitation.attempt, Invitation.messages_attempt).where(
            Invitation.id == invitation_id
        )
    ).one_or_none()
    if row is None:
        raise LifecycleError(f"no invitation {invitation_id}")
    waiting = conn.execute(
        select(func.count()).where(
            OutboxMessage.invitation_id == invitation_id,
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]),
        )
    ).scalar_one()
    # Messages `outbox send` will not send again: the refusal points at `outbox resolve`/`retry`.
    stuck_rows = conn.execute(
        select(OutboxMessage.id, OutboxMessage.status)
        .where(
            OutboxMessage.invitation_id == invitation_id,
            OutboxMessage.status.in_([OutboxStatus.UNKNOWN, OutboxStatus.DEAD]),
            OutboxMessage.idempotency_key.startswith(
                invitation_key(invitation_id, row.messages_attempt, "")
            ),
        )
        .order_by(OutboxMessage.id)
    ).all()
    stuck = min(stuck_rows, key=lambda m: m.status != OutboxStatus.UNKNOWN, default=None)
    attempt = rules.resend_attempt(
        InvitationStatus(row.status),
        attempt=row.attempt,
        messages_attempt=row.messages_attempt,
        message_waiting=bool(waiting),
        stuck_message=(int(stuck.id), str(stuck.status)) if stuck is not None else None,
    )
    if isinstance(attempt, rules.Refusal):
        raise _refused(invitation_id, attempt)
    # Guarded by the attempt read above: two resends at once record one attempt, not two.
    recorded = conn.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, Invitation.attempt == row.attempt)
        .values(attempt=attempt, updated_at=clock.now())
    ).rowcount
    if not recorded:
        raise _refused(invitation_id, rules.Refusal("already has a message waiting to be sent"))
    audit(conn, "invitation", invitation_id, "resend", None, attempt, actor)
    return invitation_key_prefix(invitation_id, attempt)


def request_connection(conn: Connection, invitation_id: int, actor: str) -> None:
    """A provider-initiated request to a registered client's app: Registered -> Invited."""
    status = invitation_status(conn, invitation_id)
    new = rules.after_request(status)
    if isinstance(new, rules.Refusal):
        raise _refused(invitation_id, new)
    conn.execute(
        update(Invitation).where(Invitation.id == invitation_id).values(requested_at=clock.now())
    )
    set_invitation_status(conn, invitation_id, status, new, actor, "provider-initiated request")


def accept_request(conn: Connection, invitation_id: int, actor: str = "mobile-app") -> int:
    """The client accepted the request in the app: the connection is approved automatically
    (created when the client had none there) and the invitation becomes Connected."""
    answer = rules.after_accept(invitation_status(conn, invitation_id))
    if isinstance(answer, rules.Refusal):
        raise _refused(invitation_id, answer)
    return approve_for_invitation(conn, invitation_id, actor, "request accepted")


def approve_for_invitation(
    conn: Connection,
    invitation_id: int,
    actor: str,
    reason: str,
    mobile_phone: str | None = None,
) -> int:
    """Find or create the invited client's connection at the invitation's location, approve it,
    map its MRN from the Client ID, and connect the invitation. Returns the connection id."""
    inv = conn.execute(
        select(
            Invitation.id,
            Invitation.status,
            Invitation.provider_id,
            Invitation.location_id,
            Client.id.label("client_id"),
            Client.client_ref,
            Client.first_name,
            Client.last_name,
            Client.date_of_birth,
            Client.email,
            Client.mobile_phone,
        )
        .join(Client, Client.id == Invitation.client_id)
        .where(Invitation.id == invitation_id)
    ).one()
    existing = conn.execute(
        select(ConnectionRow.id, ConnectionRow.status, ConnectionRow.mrn)
        .where(
            ConnectionRow.location_id == inv.location_id,
            or_(
                ConnectionRow.client_id == inv.client_id,
                and_(
                    ConnectionRow.email == inv.email,
                    ConnectionRow.date_of_birth == inv.date_of_birth,
                ),
            ),
        )
        .order_by(ConnectionRow.id)
    ).first()
    if existing is None:
        connection_id = add_connection(
            conn,
            provider_id=inv.provider_id,
            location_id=inv.location_id,
            client_id=inv.client_id,
            first_name=inv.first_name,
            last_name=inv.last_name,
            date_of_birth=inv.date_of_birth,
            email=inv.email or "",
            mobile_phone=mobile_phone or inv.mobile_phone,
            status=ConnectionStatus.APPROVED,
            mrn=inv.client_ref,
        )
        audit(
            conn,
            "connection",
            connection_id,
            "status",
            None,
            ConnectionStatus.APPROVED,
            actor,
            reason,
        )
    else:
        connection_id = existing.id
        conn.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id)
            .values(
                client_id=inv.client_id,
                mrn=connection_rules.mrn_on_approval(existing.mrn, inv.client_ref),
                updated_at=clock.now(),
            )
        )
        if connection_rules.status_changes(existing.status, ConnectionStatus.APPROVED):
            conn.execute(
                update(ConnectionRow)
                .where(ConnectionRow.id == connection_id)
                .values(status=ConnectionStatus.APPROVED)
            )
            audit(
                conn,
                "connection",
                connection_id,
                "status",
                existing.status,
                ConnectionStatus.APPROVED,
                actor,
                reason,
            )
    set_invitation_status(
        conn, invitation_id, InvitationStatus(inv.status), InvitationStatus.CONNECTED, actor, reason
    )
    _mark_others_new(conn, invitation_id, actor)
    return int(connection_id)
