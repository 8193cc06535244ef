"""The practice's side: schema, providers, roster and single invitations, the seed's
Invitations and Connections screens, opt-outs by staff, mobile registrations, the HL7 error
queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from openslots.api._session import (
    InvalidRegistration,
    NotFoundError,
    _reading,
    _writing,
    require_current_schema,
)
from openslots.connectors.database import (
    hl7_store,
    listings,
    opt_outs,
    provider_admin,
    providers,
    registrations,
    upgrade_database,
)
from openslots.connectors.database import lifecycle as life
from openslots.connectors.database import slots as slot_repo
from openslots.connectors.database.engine import display_url
from openslots.connectors.database.lifecycle import LifecycleError
from openslots.connectors.database.models import Channel, ImportMode
from openslots.connectors.database.providers import Feed
from openslots.domain.clock import is_time_zone
from openslots.domain.statuses import ConnectionStatus
from openslots.errors import ConfigurationError, OpenslotsError
from openslots.resources import resources

# --- schema -------------------------------------------------------------------------------


def upgrade_schema(revision: str = "head") -> dict[str, str]:
    """Create or migrate the schema (the only function here that does); returns the database
    (password hidden) and the revision now current."""
    database = display_url()
    return {"database": database, "revision": upgrade_database(revision=revision)}


def check_timezone(timezone: str) -> None:
    """Refuse a time zone that is not an IANA name (a provider's locations keep wall clock in
    it)."""
    if not is_time_zone(timezone):
        raise OpenslotsError("timezone: not an IANA time zone name (e.g. America/Chicago)")


# --- providers ----------------------------------------------------------------------------


def list_providers() -> list[dict[str, Any]]:
    """Providers by name with `id`, `name`, `integrated` and their `locations` (id, name)."""
    with _reading() as conn:
        return providers.providers_with_locations(conn)


def add_provider(
    name: str, locations: Sequence[str], integrated: bool, timezone: str | None = None
) -> dict[str, Any]:
    """Add a provider with locations; an existing one gains the locations it lacks. With
    `timezone` (an IANA name), the locations given keep their wall clock in it."""
    if timezone is not None:
        check_timezone(timezone)
    created: list[dict[str, Any]] = []
    with _writing() as conn:
        for location in locations:
            target = providers.ensure_target(
                conn, name, location, integrated=integrated, create=True
            )
            if timezone is not None:
                slot_repo.set_location_timezone(conn, target.location_id, timezone)
            created.append(
                {
                    "location": location,
                    "location_id": target.location_id,
                    "created": target.location_created,
                }
            )
    return {
        "provider": name,
        "provider_id": target.provider_id,
        "integrated": target.integrated,
        "locations": created,
    }


def set_provider_feed(provider: str, application: str, facility: str, actor: str) -> dict[str, Any]:
    """Record the HL7 feed (MSH-3 application, MSH-4 facility) whose A40 merges apply to the
    provider (audited)."""
    with _writing() as conn:
        return provider_admin.set_feed(conn, provider, Feed(application, facility), actor)


def set_provider_integrated(
    provider: str, integrated: bool, actor: str, reason: str | None = None
) -> dict[str, Any]:
    """Mark a provider EHR-integrated or not (audited): `{"provider_id", "provider", "from",
    "to"}`. A message never does this."""
    with _writing() as conn:
        return provider_admin.set_integrated(conn, provider, integrated, actor, reason)


def rename_provider(old: str, new: str, actor: str) -> dict[str, Any]:
    """Rename a provider (audited): `{"provider_id", "from", "to"}`."""
    with _writing() as conn:
        return provider_admin.rename(conn, old, new, actor)


def merge_providers(source: str, target: str, actor: str) -> dict[str, Any]:
    """Move everything of provider `source` into `target` and delete `source` (audited on the
    target); the counts say what moved, folded and was dropped (provider_admin.merge)."""
    with _writing() as conn:
        return provider_admin.merge(conn, source, target, actor)


# --- imports ------------------------------------------------------------------------------


def import_report(batch_id: int) -> dict[str, Any]:
    """Counts and findings of an import batch (see `batch_report`); NotFoundError if none."""
    from sqlalchemy.exc import NoResultFound

    from openslots.reports import batch_report

    require_current_schema()
    try:
        return batch_report(batch_id)
    except NoResultFound:
        raise NotFoundError(f"no import batch {batch_id}") from None


def registration_rejections(batch_id: int) -> dict[str, Any]:
    """The findings of a registrations import: `{"batch_id", "rejections", "warnings"}`, each
    finding `{line, field, rule, message}`; NotFoundError for any other batch id."""
    report = import_report(batch_id)
    if report["mode"] != ImportMode.REGISTRATIONS:
        raise NotFoundError(f"no registrations import batch {batch_id}")
    return {k: report[k] for k in ("batch_id", "rejections", "warnings")}


def import_batches(limit: int = 50) -> list[dict[str, Any]]:
    """The latest import batches, newest first, after ending those whose process died (their
    staged rows are removed, their status becomes `interrupted`)."""
    from openslots.connectors.database import batches

    with _writing() as conn:
        batches.end_abandoned_batches(conn)
    with _reading() as conn:
        return batches.list_batches(conn, limit)


def end_imports_of_this_process(*, interrupted: bool, reason: str) -> list[tuple[int, str]]:
    """After Ctrl-C/SIGTERM (`interrupted`) or an unexpected error: end what this process left
    running (interrupted or failed, staged rows removed); (batch id, status) of every batch
    this process started, so that the caller can say what was kept."""
    from openslots.connectors.database import batches
    from openslots.connectors.database.models import BatchStatus

    status = BatchStatus.INTERRUPTED if interrupted else BatchStatus.FAILED
    with resources().engine.begin() as conn:
        return batches.end_batches_of_this_worker(conn, status, reason)


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
    import pandas as pd  # pandas and Prefect only for the commands that import rows

    from openslots.reports import batch_report
    from openslots.tasks.roster import apply_roster, stage_chunks, start_import

    require_current_schema()
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


# --- the seed's Invitations and Connections screens ----------------------------------------


def list_invitations(
    provider: str,
    location: str | None = None,
    *,
    search: str | None = None,
    status: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    """The Invitations screen; ValueError for a status that does not exist."""
    with _reading() as conn:
        provider_id, location_id = providers.provider_and_location_ids(conn, provider, location)
        return listings.list_invitations(
            conn, provider_id, location_id=location_id, search=search, status=status, sort=sort
        )


def list_connections(
    provider: str,
    location: str | None = None,
    *,
    status: str | None = None,
    priority: str | None = None,
    search: str | None = None,
    sort: str | None = None,
) -> list[dict[str, Any]]:
    """The Connections screen, with whether each connection receives Alerts."""
    with _reading() as conn:
        provider_id, location_id = providers.provider_and_location_ids(conn, provider, location)
        return listings.list_connections(
            conn,
            provider_id,
            location_id=location_id,
            status=status,
            priority=priority,
            search=search,
            sort=sort,
        )


def resend_invitation(invitation_id: int, actor: str) -> str:
    """Queue an invitation again; returns its attempt key. Refused for Opted-Out, Connected, New."""
    with _writing() as conn:
        return life.resend(conn, invitation_id, actor)


def request_connection(invitation_id: int, actor: str) -> None:
    """Send a provider-initiated request to a Registered client's app (status Invited)."""
    with _writing() as conn:
        life.request_connection(conn, invitation_id, actor)


def accept_connection_request(invitation_id: int) -> int:
    """The client accepted a provider-initiated request in the app; returns the connection id."""
    with _writing() as conn:
        return life.accept_request(conn, invitation_id)


def set_connection_status(
    connection_id: int, status: ConnectionStatus, actor: str, reason: str | None = None
) -> ConnectionStatus:
    """Approve, pause, decline or set back to pending (audited); returns the previous status."""
    with _writing() as conn:
        return life.set_connection_status(conn, connection_id, status, actor, reason)


def set_priority(connection_id: int, label: str | None, actor: str) -> None:
    """Set the practice's priority label (one of OPENSLOTS_PRIORITY_LABELS)."""
    labels = resources().settings.priority_labels
    with _writing() as conn:
        life.set_priority(conn, connection_id, label, labels, actor)


def set_mrn(connection_id: int, mrn: str | None, actor: str, reason: str | None = None) -> None:
    """Set (or clear) the Client ID / MRN of a connection (audited)."""
    with _writing() as conn:
        life.set_mrn(conn, connection_id, mrn, actor, reason)


def set_availability(connection_id: int, windows: str, actor: str) -> str | None:
    """Set when a connection can come (`Mon-Fri 08:00-12:00; Sat 09:00-11:00`, in the
    location's time zone; `any` clears it). Returns the canonical text stored (None: any
    time); a malformed window is refused naming the part that is wrong."""
    from openslots.domain.availability import AvailabilityError, normalise_windows

    try:
        canonical = normalise_windows(windows)
    except AvailabilityError as exc:
        raise OpenslotsError(str(exc)) from None
    with _writing() as conn:
        life.set_availability(conn, connection_id, canonical, actor)
    return canonical


def audit_events(entity: str, entity_id: int) -> list[dict[str, Any]]:
    """Every recorded change of a `connection`, `invitation` or `outbox` message (or an
    `opt_out`): who, when, from, to, why."""
    with _reading() as conn:
        return listings.audit_events(conn, entity, entity_id)


def opt_out(provider: str, channel: str, address: str, actor: str, reason: str | None) -> int:
    """Never contact this address (`channel` email or sms) for this provider again; returns
    the number of invitations now Opted-Out."""
    with _writing() as conn:
        provider_id = providers.provider_id_for(conn, provider)
        return opt_outs.opt_out(conn, provider_id, Channel(channel), address, actor, reason)


def opt_in(provider: str, channel: str, address: str, actor: str, reason: str | None) -> int:
    """Reverse an opt-out; returns the number of invitations restored to their earlier status."""
    with _writing() as conn:
        provider_id = providers.provider_id_for(conn, provider)
        return opt_outs.opt_in(conn, provider_id, Channel(channel), address, actor, reason)


# --- mobile app ---------------------------------------------------------------------------


def register_from_app(**fields: str | None) -> dict[str, Any]:
    """Validate and apply one registration (fields as in `openslots registrations import`)."""
    import pandas as pd  # pandas, pandera and Prefect only for the commands that import rows

    from openslots.schemas.registrations import REGISTRATION_COLUMNS, validate_registrations
    from openslots.schemas.roster import Rejection
    from openslots.tasks.registrations import UNKNOWN_PROVIDER, registration_input

    unknown = set(fields) - set(REGISTRATION_COLUMNS)
    if unknown:
        raise TypeError(f"unknown registration fields: {', '.join(sorted(unknown))}")
    res = resources()
    settings, engine = res.settings, res.require_current_schema()
    frame = pd.DataFrame([{k: fields.get(k) or "" for k in REGISTRATION_COLUMNS}], dtype="str")
    chunk = validate_registrations(frame, 1, settings.phone_region)
    if chunk.rejections:
        raise InvalidRegistration([r.as_dict() for r in chunk.rejections])
    row = next(chunk.accepted.itertuples(index=False))._asdict()
    try:
        with engine.begin() as conn:
            return asdict(registrations.register(conn, registration_input(row)))
    except (LifecycleError, ConfigurationError) as exc:
        # The file import's rule for the same case (tasks.registrations).
        raise InvalidRegistration(
            [Rejection(1, "provider", UNKNOWN_PROVIDER, str(exc)).as_dict()]
        ) from None


# --- HL7 ------------------------------------------------------------------------------------


def hl7_errors() -> list[dict[str, object]]:
    """Stored HL7 messages that failed, with the segment, field and rule."""
    with _reading() as conn:
        return hl7_store.errors(conn)


def requeue_hl7_messages(message_ids: Sequence[int] | None) -> int:
    """Queue failed messages again (every one when `message_ids` is None); returns how many."""
    with _writing() as conn:
        return hl7_store.requeue(conn, message_ids)
