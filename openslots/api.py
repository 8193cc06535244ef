"""The Python API the mobile app's backend calls. Patient data goes straight to the database;
nothing here runs through Prefect.

Example::

    from openslots.api import register_from_app
    register_from_app(email="ana@example.org", date_of_birth="1990-01-02", first_name="Ana",
                      last_name="Ruiz", provider="Dr. Lee", location="Main St")
    # -> {"registration_id": 1, "outcome": "dob_match", "connected_invitations": [3], ...}
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from openslots.connectors.database import get_engine, require_current_schema
from openslots.connectors.database.lifecycle import accept_request, register
from openslots.errors import OpenslotsError
from openslots.schemas.registrations import REGISTRATION_COLUMNS, validate_registrations
from openslots.settings import get_settings
from openslots.tasks.registrations import registration_input


class InvalidRegistration(OpenslotsError):
    """The registration breaks a rule; `rejections` lists (field, rule, message)."""

    def __init__(self, rejections: list[dict[str, Any]]):
        self.rejections = rejections
        fields = ", ".join(f"{r['field']} ({r['rule']})" for r in rejections)
        super().__init__(f"invalid registration: {fields}")


def register_from_app(**fields: str | None) -> dict[str, Any]:
    """Validate and apply one registration (fields as in `openslots registrations import`)."""
    unknown = set(fields) - set(REGISTRATION_COLUMNS)
    if unknown:
        raise TypeError(f"unknown registration fields: {', '.join(sorted(unknown))}")
    settings = get_settings()
    require_current_schema(settings)
    frame = pd.DataFrame([{k: fields.get(k) or "" for k in REGISTRATION_COLUMNS}], dtype="str")
    chunk = validate_registrations(frame, 1, settings.phone_region)
    if chunk.rejections:
        raise InvalidRegistration(
            [{"field": r.field, "rule": r.rule, "message": r.message} for r in chunk.rejections]
        )
    row = next(chunk.accepted.itertuples(index=False))._asdict()
    with get_engine(settings).begin() as conn:
        return asdict(register(conn, registration_input(row)))


def accept_connection_request(invitation_id: int) -> int:
    """The client accepted a provider-initiated request in the app; returns the connection id."""
    with get_engine().begin() as conn:
        return accept_request(conn, invitation_id)


def invite(
    provider: str,
    location: str,
    *,
    client_id: str,
    first_name: str,
    last_name: str,
    date_of_birth: str,
    email: str,
    mobile_phone: str | None = None,
    guardian_first_name: str | None = None,
    guardian_last_name: str | None = None,
) -> dict[str, Any]:
    """Invite one client (or, with guardian names, one dependent): the roster's validation,
    matching and queueing, for a single row. Returns the import report (see `batch_report`)."""
    from openslots.reports import batch_report
    from openslots.tasks.roster import apply_roster, stage_chunks, start_import

    row = {
        "client_id": client_id,
        "first_name": first_name,
        "last_name": last_name,
        "date_of_birth": date_of_birth,
        "email": email,
        "mobile_phone": mobile_phone or "",
        "guardian_first_name": guardian_first_name or "",
        "guardian_last_name": guardian_last_name or "",
    }
    source = "invite:dependent" if guardian_first_name else "invite:client"
    start = start_import.fn(source, provider, location, "invite", False, False)
    staged = stage_chunks(start.batch_id, [(1, pd.DataFrame([row], dtype="str"), 1.0)])
    apply_roster.fn(start.batch_id, staged)
    return batch_report(start.batch_id)
