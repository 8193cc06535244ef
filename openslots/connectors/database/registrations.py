"""Mobile registrations: the seed's Date of Birth Match and its alternatives (Registered, New,
a Pending request from the app). Every change is audited in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Connection, insert, select, update

from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.lifecycle import (
    approve_for_invitation,
    audit,
    invitation_status,
    set_availability,
    set_invitation_status,
)
from openslots.connectors.database.models import Client, Invitation, Registration
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.providers import location_id_for, provider_id_for
from openslots.domain import clock
from openslots.domain import lifecycle as rules
from openslots.domain.availability import normalise_windows
from openslots.domain.statuses import ConnectionStatus, InvitationStatus
from openslots.errors import ConfigurationError


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
    availability: str | None = None  # windows as written (`any` clears); None: not given

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
    touched: list[int] = []  # connections this registration approved or requested
    for inv in invitations:
        matched = rules.dob_match(inv.email, inv.date_of_birth, reg.email, person_dob)
        if rules.dob_match_connects(InvitationStatus(inv.status), matched=matched):
            touched.append(
                approve_for_invitation(conn, inv.id, actor, "date of birth match", reg.mobile_phone)
            )
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
        current = invitation_status(conn, inv.id)
        new = rules.status_after_registration(
            current, matched=False, other_person_connected=inv.provider_id in connected_providers
        )
        if new is not current:
            set_invitation_status(conn, inv.id, current, new, actor, "mobile registration")
            result.registered_invitations.append(inv.id)

    if (
        provider_id is not None
        and location_id is not None
        and ((provider_id, location_id) not in connected_here)
    ):
        result.pending_connection = _request_from_app(conn, reg, provider_id, location_id, actor)
        touched.append(result.pending_connection)
    if reg.availability is not None:  # the patient's windows hold for what they connected to
        windows = normalise_windows(reg.availability)
        for connection_id in touched:
            set_availability(conn, connection_id, windows, actor)
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
