"""Connections and invitations over their life: registrations, DOB matches, requests, resends,
status, priority and MRN changes, opt-outs. Every change writes an audit event in the same
transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.models import (
    AuditEvent,
    Channel,
    Client,
    Invitation,
    OptOut,
    OutboxMessage,
    OutboxStatus,
    Registration,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.providers import location_id_for as location_id_for
from openslots.connectors.database.providers import provider_id_for as provider_id_for
from openslots.domain import clock
from openslots.domain import connections as connection_rules
from openslots.domain import lifecycle as rules
from openslots.domain.messages import invitation_key_prefix
from openslots.domain.statuses import ConnectionStatus, InvitationStatus
from openslots.errors import ConfigurationError, OpenslotsError


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
    _set_invitation_status(conn, invitation.id, current, new, actor, "connection approved")
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
        _set_invitation_status(
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


# --- invitations ---------------------------------------------------------------------------


def _set_invitation_status(
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


def _invitation_status(conn: Connection, invitation_id: int) -> InvitationStatus:
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
    attempt = rules.resend_attempt(
        InvitationStatus(row.status),
        attempt=row.attempt,
        messages_attempt=row.messages_attempt,
        message_waiting=bool(waiting),
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
    status = _invitation_status(conn, invitation_id)
    new = rules.after_request(status)
    if isinstance(new, rules.Refusal):
        raise _refused(invitation_id, new)
    conn.execute(
        update(Invitation).where(Invitation.id == invitation_id).values(requested_at=clock.now())
    )
    _set_invitation_status(conn, invitation_id, status, new, actor, "provider-initiated request")


def accept_request(conn: Connection, invitation_id: int, actor: str = "mobile-app") -> int:
    """The client accepted the request in the app: the connection is approved automatically
    (created when the client had none there) and the invitation becomes Connected."""
    answer = rules.after_accept(_invitation_status(conn, invitation_id))
    if isinstance(answer, rules.Refusal):
        raise _refused(invitation_id, answer)
    return _approve_for_invitation(conn, invitation_id, actor, "request accepted")


def _approve_for_invitation(
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
    _set_invitation_status(
        conn, invitation_id, InvitationStatus(inv.status), InvitationStatus.CONNECTED, actor, reason
    )
    _mark_others_new(conn, invitation_id, actor)
    return int(connection_id)


# --- registrations -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationInput:
    """A mobile registration, normalised (email lower-cased, phone E.164 or None)."""

    email: str
    date_of_birth: dt.date
    first_name: str
    last_name: str
    mobile_phone: str | None = None
    provider: str | None = None
    location: str | None = None
    dependent_first_name: str | None = None
    dependent_last_name: str | None = None
    dependent_date_of_birth: dt.date | None = None

    @property
    def is_dependent(self) -> bool:
        return self.dependent_date_of_birth is not None

    @property
    def person(self) -> tuple[str, str, dt.date]:
        """(first name, last name, date of birth) of who connects: the dependent, if any; a
        guardian registers with their own email and the dependent's date of birth."""
        if self.dependent_date_of_birth is not None:
            return (
                self.dependent_first_name or "",
                self.dependent_last_name or "",
                self.dependent_date_of_birth,
            )
        return self.first_name, self.last_name, self.date_of_birth


@dataclass
class RegistrationOutcome:
    registration_id: int
    outcome: str  # dob_match | registered | pending_request
    connected_invitations: list[int] = field(default_factory=list)
    registered_invitations: list[int] = field(default_factory=list)
    pending_connection: int | None = None


def register(
    conn: Connection, reg: RegistrationInput, actor: str = "mobile-app"
) -> RegistrationOutcome:
    """Apply one mobile registration (the seed's Date of Birth Match and its alternatives).

    - Its email + date of birth (a dependent's date of birth, with the guardian's email) equal
      an invitation's: that connection is approved at once and the invitation is Connected.
    - Other invitations to that email: Registered, or New when another person with the email
      is now Connected with that provider (a guardian whose dependent connected).
    - Naming a provider and location is also a request to connect: without a DOB match there,
      it creates a Pending connection.
    """
    provider_id = location_id = None
    if reg.provider:
        provider_id = provider_id_for(conn, reg.provider)
        if not reg.location:
            raise ConfigurationError("a registration naming a provider must name a location")
        location_id = location_id_for(conn, provider_id, reg.location)
    registration_id = conn.execute(
        insert(Registration)
        .values(
            email=reg.email,
            date_of_birth=reg.date_of_birth,
            first_name=reg.first_name,
            last_name=reg.last_name,
            mobile_phone=reg.mobile_phone,
            dependent_first_name=reg.dependent_first_name,
            dependent_last_name=reg.dependent_last_name,
            dependent_date_of_birth=reg.dependent_date_of_birth,
            provider_id=provider_id,
            location_id=location_id,
            outcome="registered",
            received_at=clock.now(),
        )
        .returning(Registration.id)
    ).scalar_one()
    result = RegistrationOutcome(registration_id, "registered")
    person_dob = reg.person[2]

    invitations = conn.execute(
        select(
            Invitation.id,
            Invitation.status,
            Invitation.provider_id,
            Invitation.location_id,
            Client.email,
            Client.date_of_birth,
        )
        .join(Client, Client.id == Invitation.client_id)
        .where(Client.email == reg.email)
        .order_by(Invitation.id)
    ).all()
    connected_here: set[tuple[int, int]] = set()
    for inv in invitations:
        matched = rules.dob_match(inv.email, inv.date_of_birth, reg.email, person_dob)
        if rules.dob_match_connects(InvitationStatus(inv.status), matched=matched):
            _approve_for_invitation(conn, inv.id, actor, "date of birth match", reg.mobile_phone)
            result.connected_invitations.append(inv.id)
            connected_here.add((inv.provider_id, inv.location_id))
    connected_providers = {
        row[0]
        for row in conn.execute(
            select(Invitation.provider_id)
            .join(Client, Client.id == Invitation.client_id)
            .where(Client.email == reg.email, Invitation.status == InvitationStatus.CONNECTED)
        )
    }
    for inv in invitations:
        if inv.id in result.connected_invitations:
            continue
        current = _invitation_status(conn, inv.id)
        new = rules.status_after_registration(
            current, matched=False, other_person_connected=inv.provider_id in connected_providers
        )
        if new is not current:
            _set_invitation_status(conn, inv.id, current, new, actor, "mobile registration")
            result.registered_invitations.append(inv.id)

    if (
        provider_id is not None
        and location_id is not None
        and ((provider_id, location_id) not in connected_here)
    ):
        result.pending_connection = _request_from_app(conn, reg, provider_id, location_id, actor)
    result.outcome = rules.registration_outcome(
        dob_matched=bool(result.connected_invitations),
        requested=result.pending_connection is not None,
    )
    conn.execute(
        update(Registration)
        .where(Registration.id == registration_id)
        .values(outcome=result.outcome)
    )
    return result


def _request_from_app(
    conn: Connection, reg: RegistrationInput, provider_id: int, location_id: int, actor: str
) -> int:
    """A connection request made from the app without a DOB match arrives Pending."""
    first, last, dob = reg.person
    existing = conn.execute(
        select(ConnectionRow.id).where(
            ConnectionRow.location_id == location_id,
            ConnectionRow.email == reg.email,
            ConnectionRow.date_of_birth == dob,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    connection_id = add_connection(
        conn,
        provider_id=provider_id,
        location_id=location_id,
        first_name=first,
        last_name=last,
        date_of_birth=dob,
        email=reg.email,
        mobile_phone=reg.mobile_phone,
        status=ConnectionStatus.PENDING,
    )
    audit(
        conn,
        "connection",
        connection_id,
        "status",
        None,
        ConnectionStatus.PENDING,
        actor,
        "connection request from the app",
    )
    return int(connection_id)


# --- opt-out -------------------------------------------------------------------------------


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
        _set_invitation_status(conn, inv.id, current, new, actor, reason or "opted out")
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
        _set_invitation_status(conn, inv.id, current, new, actor, reason or "opted in")
        conn.execute(
            update(Invitation).where(Invitation.id == inv.id).values(status_before_opt_out=None)
        )
        restored += 1
    return restored
