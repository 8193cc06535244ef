"""The seed's two screens as queries: invitations and connections, searchable and sortable.

Like every repository function, each takes an open Connection; `openslots.api` opens it (after
checking the schema) for the CLI and the web app.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, or_, select

from openslots.connectors.database.eligibility import eligible_connections
from openslots.connectors.database.models import AuditEvent, Client, Invitation, Location
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.lifecycle import resend_refusal
from openslots.domain.statuses import InvitationStatus
from openslots.errors import ConfigurationError

INVITATION_COLUMNS = {
    "id": Invitation.id,
    "status": Invitation.status,
    "client_id": Client.client_ref,
    "first_name": Client.first_name,
    "last_name": Client.last_name,
    "guardian_first_name": Client.guardian_first_name,
    "guardian_last_name": Client.guardian_last_name,
    "email": Client.email,
    "mobile_phone": Client.mobile_phone,
    "location": Location.name,
    "last_sent_at": Invitation.last_sent_at,
    "send_count": Invitation.send_count,
}
CONNECTION_COLUMNS = {
    "id": ConnectionRow.id,
    "status": ConnectionRow.status,
    "priority": ConnectionRow.priority,
    "first_name": ConnectionRow.first_name,
    "last_name": ConnectionRow.last_name,
    "date_of_birth": ConnectionRow.date_of_birth,
    "email": ConnectionRow.email,
    "mobile_phone": ConnectionRow.mobile_phone,
    "client_id": ConnectionRow.mrn,
    "location": Location.name,
    "availability": ConnectionRow.availability,
    "created_at": ConnectionRow.created_at,
}


def _sorted(
    query: Select[*tuple[Any, ...]], columns: dict[str, Any], sort: str | None
) -> Select[*tuple[Any, ...]]:
    if not sort:
        return query.order_by(columns["id"])
    name, _, direction = sort.partition(":")
    if name not in columns or direction not in ("", "asc", "desc"):
        raise ConfigurationError(
            f"cannot sort by {sort!r}: use one of {', '.join(columns)}, optionally with :desc"
        )
    column = columns[name]
    return query.order_by(column.desc() if direction == "desc" else column.asc(), columns["id"])


def list_invitations(
    conn: Connection,
    provider_id: int,
    *,
    location_id: int | None = None,
    search: str | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    """Search matches the client's or the guardian's name (any case, any part)."""
    query = (
        select(*[c.label(n) for n, c in INVITATION_COLUMNS.items()])
        .join(Client, Client.id == Invitation.client_id)
        .join(Location, Location.id == Invitation.location_id)
        .where(Invitation.provider_id == provider_id)
    )
    if location_id is not None:
        query = query.where(Invitation.location_id == location_id)
    if status:
        query = query.where(Invitation.status == InvitationStatus(status))
    if search:
        pattern = f"%{search.strip()}%"
        query = query.where(
            or_(
                Client.first_name.ilike(pattern),
                Client.last_name.ilike(pattern),
                Client.guardian_first_name.ilike(pattern),
                Client.guardian_last_name.ilike(pattern),
                (Client.first_name + " " + Client.last_name).ilike(pattern),
            )
        )
    rows = [dict(r._mapping) for r in conn.execute(_sorted(query, INVITATION_COLUMNS, sort))]
    for row in rows:
        refusal = resend_refusal(InvitationStatus(row["status"]))
        row["resend_permitted"] = refusal is None
        row["resend_refused_because"] = refusal
    return rows


def list_connections(
    conn: Connection,
    provider_id: int,
    *,
    location_id: int | None = None,
    status: str | None = None,
    priority: str | None = None,
    search: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    eligible = set(conn.execute(eligible_connections(provider_id, location_id)).scalars())
    query = (
        select(*[c.label(n) for n, c in CONNECTION_COLUMNS.items()])
        .join(Location, Location.id == ConnectionRow.location_id)
        .where(ConnectionRow.provider_id == provider_id)
    )
    if location_id is not None:
        query = query.where(ConnectionRow.location_id == location_id)
    if status:
        query = query.where(ConnectionRow.status == status)
    if priority:
        query = query.where(ConnectionRow.priority == priority)
    if search:
        pattern = f"%{search.strip()}%"
        query = query.where(
            or_(
                ConnectionRow.first_name.ilike(pattern),
                ConnectionRow.last_name.ilike(pattern),
                ConnectionRow.email.ilike(pattern),
                ConnectionRow.mrn.ilike(pattern),
            )
        )
    rows = [dict(r._mapping) for r in conn.execute(_sorted(query, CONNECTION_COLUMNS, sort))]
    for row in rows:
        row["receives_alerts"] = row["id"] in eligible
    return rows


def audit_events(conn: Connection, entity: str, entity_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            AuditEvent.created_at.label("at"),
            AuditEvent.actor,
            AuditEvent.action,
            AuditEvent.from_value.label("from"),
            AuditEvent.to_value.label("to"),
            AuditEvent.reason,
        )
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == entity_id)
        .order_by(AuditEvent.id)
    )
    return [dict(r._mapping) for r in rows]
