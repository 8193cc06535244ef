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
    Location,
    OptOut,
    OutboxMessage,
    OutboxStatus,
    Provider,
    Registration,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.lifecycle import resend_refusal, status_after_registration
from openslots.domain.messages import invitation_key
from openslots.domain.statuses import ConnectionStatus, InvitationStatus
from openslots.errors import ConfigurationError, OpenslotsError


class LifecycleError(OpenslotsError):
    """A change the seed's rules do not permit; the message says why (no patient data)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
            created_at=_now(),
        )
    )


def provider_id_for(conn: Connection, provider: str) -> int:
    found = conn.execute(select(Provider.id).where(Provider.name == provider)).scalar_one_or_none()
    if found is None:
        raise ConfigurationError(f"unknown provider {provider!r}")
    return int(found)


def location_id_for(conn: Connection, provider_id: int, location: str) -> int:
    found = conn.execute(
        select(Location.id).where(Location.provider_id == provider_id, Location.name == location)
    ).scalar_one_or_none()
    if found is None:
        raise ConfigurationError(f"unknown location {location!r} for this provider")
    return int(found)


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
    if old is status:
        return old
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(status=status, updated_at=_now())
    )
    audit(conn, "connection", connection_id, "status", old, status, actor, reason)
    if status is ConnectionStatus.APPROVED and row.client_id is not None:
        _connect_invitation(conn, row.client_id, row.location_id, actor)
    return old


def _connect_invitation(conn: Connection, client_id: int, location_id: int, actor: str) -> None:
    """Seed: Connected = the client has been Approved on the Connections screen."""
    invitation = conn.execute(
        select(Invitation.id, Invitation.status).where(
            Invitation.client_id == client_id, Invitation.location_id == location_id
        )
    ).one_or_none()
    if invitation is None or invitation.status in (
        InvitationStatus.CONNECTED,
        InvitationStatus.OPTED_OUT,
    ):
        return
    _set_invitation_status(
        conn,
        invitation.id,
        InvitationStatus(invitation.status),
        InvitationStatus.CONNECTED,
        actor,
        "connection approved",
    )
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
            Invitation.status.in_(
                [
                    InvitationStatus.QUEUED,
                    InvitationStatus.SENT,
                    InvitationStatus.REGISTERED,
                    InvitationStatus.INVITED,
                ]
            ),
        )
    ).all()
    for other in others:
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
    if label is not None and label not in labels:
        raise LifecycleError(
            f"unknown priority {label!r}; the practice's labels are {', '.join(labels)} "
            "(OPENSLOTS_PRIORITY_LABELS)"
        )
    old = _connection(conn, connection_id).priority
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(priority=label, updated_at=_now())
    )
    audit(conn, "connection", connection_id, "priority", old, label, actor)


def set_mrn(
    conn: Connection, connection_id: int, mrn: str | None, actor: str, reason: str | None = None
) -> None:
    """Set (or clear) the Client ID / MRN an integrated provider's alerts require."""
    mrn = (mrn or "").strip() or None
    if mrn is not None and len(mrn) > 64:
        raise LifecycleError("MRN is longer than 64 characters")
    old = _connection(conn, connection_id).mrn
    conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.id == connection_id)
        .values(mrn=mrn, updated_at=_now())
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
        .values(status=new, updated_at=_now())
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
    """Queue the invitation again (email, and SMS when there is a phone); returns the attempt
    key prefix. Refused, with the seed's reason, for Opted-Out, Connected and New."""
    status = _invitation_status(conn, invitation_id)
    refusal = resend_refusal(status)
    if refusal:
        raise LifecycleError(f"invitation {invitation_id} cannot be resent: {refusal}")
    pending = conn.execute(
        select(func.count()).where(
            OutboxMessage.invitation_id == invitation_id,
            OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]),
        )
    ).scalar_one()
    if pending:
        raise LifecycleError(f"invitation {invitation_id} already has a message waiting to be sent")
    attempt = (
        1
        + conn.execute(
            select(func.count()).where(
                OutboxMessage.invitation_id == invitation_id, OutboxMessage.channel == Channel.EMAIL
            )
        ).scalar_one()
    )
    queue_invitation_messages(conn, invitation_id, attempt)
    audit(conn, "invitation", invitation_id, "resend", None, attempt, actor)
    return f"invite:{invitation_id}:{attempt}"


def queue_invitation_messages(conn: Connection, invitation_id: int, attempt: int) -> None:
    email, phone = conn.execute(
        select(Client.email, Client.mobile_phone)
        .join(Invitation, Invitation.client_id == Client.id)
        .where(Invitation.id == invitation_id)
    ).one()
    channels = ([Channel.EMAIL] if email else []) + ([Channel.SMS] if phone else [])
    conn.execute(
        insert(OutboxMessage),
        [
            {
                "idempotency_key": invitation_key(invitation_id, attempt, channel),
                "kind": "invitation",
                "channel": channel,
                "invitation_id": invitation_id,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "created_at": _now(),
            }
            for channel in channels
        ],
    )


def request_connection(conn: Connection, invitation_id: int, actor: str) -> None:
    """A provider-initiated request to a registered client's app: Registered -> Invited."""
    status = _invitation_status(conn, invitation_id)
    if status is not InvitationStatus.REGISTERED:
        raise LifecycleError(
            f"invitation {invitation_id} is {status}: a request can only go to a client who "
            "registered in the app and is not connected (status Registered)"
        )
    conn.execute(
        update(Invitation).where(Invitation.id == invitation_id).values(requested_at=_now())
    )
    _set_invitation_status(
        conn, invitation_id, status, InvitationStatus.INVITED, actor, "provider-initiated request"
    )


def accept_request(conn: Connection, invitation_id: int, actor: str = "mobile-app") -> int:
    """The client accepted the request in the app: the connection is approved automatically
    (created when the client had none there) and the invitation becomes Connected."""
    status = _invitation_status(conn, invitation_id)
    if status is not InvitationStatus.INVITED:
        raise LifecycleError(
            f"invitation {invitation_id} is {status}, not Invited: no request "
            "is waiting for an answer"
        )
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
            .values(client_id=inv.client_id, mrn=existing.mrn or inv.client_ref, updated_at=_now())
        )
        if existing.status != ConnectionStatus.APPROVED:
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
            received_at=_now(),
        )
        .returning(Registration.id)
    ).scalar_one()
    result = RegistrationOutcome(registration_id, "registered")
    person_dob = reg.dependent_date_of_birth or reg.date_of_birth

    invitations = conn.execute(
        select(
            Invitation.id,
            Invitation.status,
            Invitation.provider_id,
            Invitation.location_id,
            Client.date_of_birth,
        )
        .join(Client, Client.id == Invitation.client_id)
        .where(Client.email == reg.email)
        .order_by(Invitation.id)
    ).all()
    connected_here: set[tuple[int, int]] = set()
    for inv in invitations:
        matched = inv.date_of_birth == person_dob
        if matched and inv.status not in (InvitationStatus.OPTED_OUT, InvitationStatus.CONNECTED):
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
        new = status_after_registration(
            current, matched=False, other_person_connected=inv.provider_id in connected_providers
        )
        if new is not current:
            _set_invitation_status(conn, inv.id, current, new, actor, "mobile registration")
            result.registered_invitations.append(inv.id)

    if result.connected_invitations:
        result.outcome = "dob_match"
    if (
        provider_id is not None
        and location_id is not None
        and ((provider_id, location_id) not in connected_here)
    ):
        result.pending_connection = _request_from_app(conn, reg, provider_id, location_id, actor)
        if not result.connected_invitations:
            result.outcome = "pending_request"
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
    first = reg.dependent_first_name if reg.is_dependent else reg.first_name
    last = reg.dependent_last_name if reg.is_dependent else reg.last_name
    dob = reg.dependent_date_of_birth or reg.date_of_birth
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
        first_name=first or "",
        last_name=last or "",
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
            .values(provider_id=provider_id, channel=channel, address=address, created_at=_now())
            .returning(OptOut.id)
        ).scalar_one()
        audit(conn, "opt_out", opt_out_id, "opt-out", None, channel, actor, reason)
    column = _contact_column(channel)
    affected = conn.execute(
        select(Invitation.id, Invitation.status)
        .join(Client, Client.id == Invitation.client_id)
        .where(
            Invitation.provider_id == provider_id,
            column == address,
            Invitation.status != InvitationStatus.OPTED_OUT,
        )
    ).all()
    for inv in affected:
        conn.execute(
            update(Invitation)
            .where(Invitation.id == inv.id)
            .values(status_before_opt_out=inv.status)
        )
        _set_invitation_status(
            conn,
            inv.id,
            InvitationStatus(inv.status),
            InvitationStatus.OPTED_OUT,
            actor,
            reason or "opted out",
        )
    ids = [inv.id for inv in affected]
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
    restored = conn.execute(
        select(Invitation.id, Invitation.status_before_opt_out)
        .join(Client, Client.id == Invitation.client_id)
        .where(
            Invitation.provider_id == provider_id,
            column == address,
            Invitation.status == InvitationStatus.OPTED_OUT,
            ~still_out,
        )
    ).all()
    for inv in restored:
        previous = InvitationStatus(inv.status_before_opt_out or InvitationStatus.SENT)
        _set_invitation_status(
            conn, inv.id, InvitationStatus.OPTED_OUT, previous, actor, reason or "opted in"
        )
        conn.execute(
            update(Invitation).where(Invitation.id == inv.id).values(status_before_opt_out=None)
        )
    return len(restored)
