"""The Python API: one function per command or screen, used by the CLI, the web app and the
mobile app's backend. Patient data goes straight to the database; nothing here runs through
Prefect.

The pattern: each function checks that the schema is current (it never migrates: only
`upgrade_schema`, i.e. `openslots db upgrade`, does), opens its own connection (reads) or
transaction (commands), and calls the repositories in `connectors/database/`, which hold all
the SQL. Pipeline work (imports, dispatch, HL7 ingest) is done by the flows instead.

Example::

    from openslots.api import register_from_app
    register_from_app(email="ana@example.org", date_of_birth="1990-01-02", first_name="Ana",
                      last_name="Ruiz", provider="Dr. Lee", location="Main St")
    # -> {"registration_id": 1, "outcome": "dob_match", "connected_invitations": [3], ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from openslots.connectors.database import (
    hl7_store,
    listings,
    opt_outs,
    outbox_admin,
    providers,
    registrations,
    upgrade_database,
)
from openslots.connectors.database import lifecycle as life
from openslots.connectors.database import slots as slot_repo
from openslots.connectors.database.engine import display_url
from openslots.connectors.database.models import Channel, OutboxStatus
from openslots.domain.inbound import InboundAction, inbound_action, phone_key
from openslots.domain.statuses import ConnectionStatus
from openslots.domain.tokens import read_token
from openslots.errors import InvalidToken, OpenslotsError
from openslots.resources import resources
from openslots.schemas.registrations import REGISTRATION_COLUMNS, validate_registrations
from openslots.tasks.registrations import registration_input

__all__ = [
    "InvalidRegistration",
    "NotFoundError",
    "NotOurNumber",
    "accept_connection_request",
    "add_provider",
    "audit_events",
    "claim_slot",
    "close_slot",
    "explain_slot",
    "hl7_errors",
    "import_report",
    "invite",
    "list_connections",
    "list_invitations",
    "list_providers",
    "list_slots",
    "open_slot",
    "opt_in",
    "opt_out",
    "outbox_list",
    "outbox_resolve",
    "outbox_retry",
    "outbox_retry_all_failed",
    "outbox_status",
    "register_from_app",
    "request_connection",
    "requeue_hl7_messages",
    "require_current_schema",
    "resend_invitation",
    "set_alert_order",
    "set_connection_status",
    "set_mrn",
    "set_priority",
    "sms_inbound",
    "unsubscribe",
    "upgrade_schema",
]


class InvalidRegistration(OpenslotsError):
    """The registration breaks a rule; `rejections` lists (field, rule, message)."""

    def __init__(self, rejections: list[dict[str, Any]]):
        self.rejections = rejections
        fields = ", ".join(f"{r['field']} ({r['rule']})" for r in rejections)
        super().__init__(f"invalid registration: {fields}")


class NotFoundError(OpenslotsError):
    """The id asked for does not exist (an import batch...); the message names the id."""


def require_current_schema() -> None:
    """Raise ConfigurationError (run `openslots db upgrade`) unless the schema is current."""
    resources().require_current_schema()


def _reading() -> AbstractContextManager[Connection]:
    return resources().require_current_schema().connect()


def _writing() -> AbstractContextManager[Connection]:
    return resources().require_current_schema().begin()


# --- schema -------------------------------------------------------------------------------


def upgrade_schema(revision: str = "head") -> dict[str, str]:
    """Create or migrate the schema (the only function here that does); returns the database
    (password hidden) and the revision now current."""
    database = display_url()
    return {"database": database, "revision": upgrade_database(revision=revision)}


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
        _check_timezone(timezone)
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
    unknown = set(fields) - set(REGISTRATION_COLUMNS)
    if unknown:
        raise TypeError(f"unknown registration fields: {', '.join(sorted(unknown))}")
    res = resources()
    settings, engine = res.settings, res.require_current_schema()
    frame = pd.DataFrame([{k: fields.get(k) or "" for k in REGISTRATION_COLUMNS}], dtype="str")
    chunk = validate_registrations(frame, 1, settings.phone_region)
    if chunk.rejections:
        raise InvalidRegistration(
            [{"field": r.field, "rule": r.rule, "message": r.message} for r in chunk.rejections]
        )
    row = next(chunk.accepted.itertuples(index=False))._asdict()
    with engine.begin() as conn:
        return asdict(registrations.register(conn, registration_input(row)))


# --- outbox and HL7 -------------------------------------------------------------------------


def outbox_status() -> dict[str, int]:
    """Messages per `channel:status`."""
    with _reading() as conn:
        return outbox_admin.status_counts(conn)


def hl7_errors() -> list[dict[str, object]]:
    """Stored HL7 messages that failed, with the segment, field and rule."""
    with _reading() as conn:
        return hl7_store.errors(conn)


def requeue_hl7_messages(message_ids: Sequence[int] | None) -> int:
    """Queue failed messages again (every one when `message_ids` is None); returns how many."""
    with _writing() as conn:
        return hl7_store.requeue(conn, message_ids)


# --- outbox: the operator's commands -------------------------------------------------------


def outbox_list(states: Sequence[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Messages that need an operator's eye (`unknown`, `dead`, `failed`; all three when
    `states` is None), oldest first: id, key, kind, channel, state, attempts, reason, times,
    invitation id. Never a body, an address or a name."""
    wanted = [OutboxStatus(s) for s in states] if states else list(outbox_admin.LISTABLE)
    refused = [str(s) for s in wanted if s not in outbox_admin.LISTABLE]
    if refused:
        raise outbox_admin.OutboxAdminError(
            f"cannot list state {', '.join(refused)}: choose unknown, dead or failed"
        )
    with _reading() as conn:
        return outbox_admin.list_messages(conn, wanted, limit)


def outbox_retry(outbox_id: int, actor: str, reason: str | None = None) -> dict[str, Any]:
    """Send a failed or dead message again now (attempts kept; audited as `outbox`)."""
    with _writing() as conn:
        was = outbox_admin.retry(conn, outbox_id, actor, reason)
    return {"id": outbox_id, "from": str(was), "to": str(OutboxStatus.PENDING)}


def outbox_retry_all_failed(actor: str, reason: str | None = None) -> dict[str, Any]:
    """Every failed message to pending now (dead ones stay dead: retry those by id)."""
    with _writing() as conn:
        ids = outbox_admin.retry_all_failed(conn, actor, reason)
    return {"retried": len(ids), "ids": ids}


def outbox_resolve(
    outbox_id: int, *, sent: bool, actor: str, reason: str | None = None
) -> dict[str, Any]:
    """An operator's verdict on an `unknown` message: it went out (`sent`, its invitation
    Sent) or it did not (pending: it will be sent). Audited with `actor` and `reason`."""
    with _writing() as conn:
        new = outbox_admin.resolve(conn, outbox_id, sent=sent, actor=actor, reason=reason)
    return {"id": outbox_id, "from": str(OutboxStatus.UNKNOWN), "to": str(new)}


# --- opt-out from the links and replies in our messages ------------------------------------

UNSUBSCRIBE_PURPOSE = "unsubscribe"  # a token's purpose; its subject is an outbox message id


class NotOurNumber(OpenslotsError):
    """An inbound text was addressed to a number (or messaging service) we do not send from."""


def unsubscribe(token: str) -> dict[str, Any]:
    """Opt out the contact an email or text was sent to, for its provider (the unsubscribe
    link's POST calls this). Idempotent: `action` is `already_opted_out` the second time.
    InvalidToken (with its reason) for a malformed, tampered or expired token; the address is
    never returned."""
    res = resources()
    engine = res.require_current_schema()
    subject = read_token(res.secret_key(), token, UNSUBSCRIBE_PURPOSE, res.now())
    if not subject.isdigit():
        raise InvalidToken("malformed")
    with engine.begin() as conn:
        target = outbox_admin.recipient(conn, int(subject))
        if target is None:
            raise NotFoundError("the message this link was sent with no longer exists")
        if not target.address:
            raise NotFoundError(f"no {target.channel} contact on file for this link's message")
        already = outbox_admin.is_opted_out(
            conn, target.provider_id, target.channel, target.address
        )
        changed = opt_outs.opt_out(
            conn,
            target.provider_id,
            target.channel,
            target.address,
            "unsubscribe",
            f"unsubscribe link ({target.channel} message {target.outbox_id})",
        )
    return {
        "action": "already_opted_out" if already else "opted_out",
        "provider": target.provider,
        "channel": str(target.channel),
        "invitations_changed": changed,
    }


def _our_number(to_number: str) -> bool:
    """Whether an inbound text reached us: OPENSLOTS_TWILIO_FROM, or with a messaging service
    (whose pool Twilio picks from) OPENSLOTS_TWILIO_MESSAGING_SERVICE_SID, which Twilio's
    inbound webhook carries as `MessagingServiceSid`."""
    settings = resources().settings
    sid = settings.twilio_messaging_service_sid
    if sid and to_number.strip() == sid:
        return True
    region = settings.phone_region
    ours = settings.twilio_from and phone_key(settings.twilio_from, region)
    return bool(ours) and phone_key(to_number, region) == ours


def sms_inbound(from_number: str, to_number: str, body: str) -> dict[str, Any]:
    """An inbound text (what a Twilio webhook hands over): STOP and the other opt-out words opt
    the sender out of every provider that sends from `to_number`, START/UNSTOP opt it back in,
    anything else is `ignored`. Today one installation number serves every provider.

    Returns `{"action": "opted_out"|"opted_in"|"ignored", "providers": n,
    "invitations_changed": n}`; NotOurNumber when `to_number` is not ours.
    """
    if not _our_number(to_number):
        raise NotOurNumber(
            "the number written to (to) is not one of our sending numbers "
            "(OPENSLOTS_TWILIO_FROM or OPENSLOTS_TWILIO_MESSAGING_SERVICE_SID)"
        )
    action = inbound_action(body)
    result: dict[str, Any] = {"action": str(action), "providers": 0, "invitations_changed": 0}
    if action is InboundAction.IGNORED:
        return result
    sender = phone_key(from_number, resources().settings.phone_region)
    if sender is None:
        raise OpenslotsError("the sender (from) is not a phone number")
    word = body.strip().upper()
    changed = 0
    with _writing() as conn:
        if action is InboundAction.OPTED_OUT:
            ids = outbox_admin.provider_ids(conn)
            for provider_id in ids:
                changed += opt_outs.opt_out(
                    conn, provider_id, Channel.SMS, sender, "sms-stop", f"replied {word}"
                )
        else:
            ids = outbox_admin.providers_opted_out(conn, Channel.SMS, sender)
            for provider_id in ids:
                changed += opt_outs.opt_in(
                    conn, provider_id, Channel.SMS, sender, "sms-start", f"replied {word}"
                )
    return result | {"providers": len(ids), "invitations_changed": changed}


# --- Open Slots -----------------------------------------------------------------------------


def _check_timezone(timezone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise OpenslotsError(
            "timezone: not an IANA time zone name (e.g. America/Chicago)"
        ) from None


def open_slot(
    provider: str,
    location: str,
    start: str,
    minutes: int,
    *,
    visit_type: str | None = None,
    mode: str = "blast",
    group_size: int = 1,
    timeout_minutes: int = 30,
) -> dict[str, Any]:
    """Open a slot and queue its offers before returning: `{"slot_id", "mode", "eligible",
    "alerts_queued", "status"}` (`alerts_queued`: connections offered now; a Serial slot's
    later groups wait for dispatch). A start without an offset is the location's wall time; a
    start that passed or falls within the lead time is recorded `closed` and offered to no one.
    """
    import secrets as _secrets

    from openslots.domain.offers import OfferMode, parse_start, too_late
    from openslots.tasks.offers import offer_due

    try:
        offer_mode = OfferMode(mode)
    except ValueError:
        raise OpenslotsError("mode: expected blast or serial") from None
    if minutes < 1 or group_size < 1 or timeout_minutes < 0:
        raise OpenslotsError("minutes and group size must be at least 1, the timeout not < 0")
    res = resources()
    engine = res.require_current_schema()
    now = res.now()
    with engine.begin() as conn:
        provider_id = providers.provider_id_for(conn, provider)
        location_id = providers.location_id_for(conn, provider_id, location)
        zone = slot_repo.location_timezone(conn, location_id) or res.settings.default_timezone
        try:
            starts_at = parse_start(start, zone)
        except ValueError as exc:
            raise OpenslotsError(str(exc)) from None
        late = too_late(starts_at, now, res.settings.alert_min_lead_minutes)
        new = slot_repo.NewSlot(
            slot_key=f"staff|{provider_id}|{location_id}|{starts_at:%Y%m%dT%H%MZ}|"
            + _secrets.token_hex(6),
            provider_id=provider_id,
            location_id=location_id,
            filler_id="",
            start=start,
            starts_at=starts_at,
            duration_minutes=minutes,
            visit_type=visit_type,
            mode=offer_mode,
            group_size=group_size,
            timeout_minutes=timeout_minutes,
        )
        slot_id = slot_repo.insert_slot(conn, new, too_late=late, message_id=None, now=now)
        eligible = 0 if late else slot_repo.offer_slot(conn, slot_id, now)
    queued = 0 if late else offer_due(engine, res.settings, now, [slot_id]).offers_sent
    return {
        "slot_id": slot_id,
        "mode": str(offer_mode),
        "eligible": eligible,
        "alerts_queued": queued,
        "status": "closed" if late else "open",
    }


def claim_slot(token: str) -> dict[str, Any]:
    """Claim the slot a claim link names: `{"slot_id", "result"}` with result `won`, `taken`,
    `expired`, `closed` or `invalid`. The first valid claim wins; the winner's token answers
    `won` again (never a second booking)."""
    from openslots.domain.offers import CLAIM_PURPOSE, ClaimResult, token_refusal

    res = resources()
    engine = res.require_current_schema()
    now = res.now()
    try:
        subject = read_token(res.secret_key(), token, CLAIM_PURPOSE, now)
    except InvalidToken as exc:
        return {"slot_id": None, "result": str(token_refusal(exc.reason))}
    if not subject.isdigit():
        return {"slot_id": None, "result": str(ClaimResult.INVALID)}
    with engine.begin() as conn:
        slot_id, result = slot_repo.claim(conn, int(subject), now)
    return {"slot_id": slot_id, "result": str(result)}


def close_slot(slot_id: int) -> dict[str, Any]:
    """Close an open slot (staff); its unsent offers are withdrawn. `closed` is False when it
    was no longer open (its `status` says why); NotFoundError for an unknown id."""
    from openslots.domain.statuses import ClosedReason

    res = resources()
    engine = res.require_current_schema()
    with engine.begin() as conn:
        closed = slot_repo.close(conn, slot_id, ClosedReason.STAFF, res.now())
        state = slot_repo.slot_state(conn, slot_id)
    if state is None:
        raise NotFoundError(f"no slot {slot_id}")
    return {
        "slot_id": slot_id,
        "closed": closed,
        "status": str(state["status"]),
        "closed_reason": None if state["closed_reason"] is None else str(state["closed_reason"]),
    }


def explain_slot(slot_id: int) -> list[dict[str, Any]]:
    """Every connection of the slot's provider (any location): `connection_id`, `client_id`,
    `outcome` (alerted / claimed / not_alerted) and `reason`."""
    with _reading() as conn:
        rows = slot_repo.explain_slot(conn, slot_id)
    if rows is None:
        raise NotFoundError(f"no slot {slot_id}")
    return rows


def list_slots(status: str | None = None, provider: str | None = None) -> list[dict[str, Any]]:
    """Slots, newest first, with offers sent, claims tried and the winner's connection id."""
    from openslots.domain.statuses import SlotStatus

    try:
        wanted = None if status is None else SlotStatus(status)
    except ValueError:
        raise OpenslotsError("status: expected open, claimed or closed") from None
    with _reading() as conn:
        provider_id = None if provider is None else providers.provider_id_for(conn, provider)
        return slot_repo.list_slots(conn, wanted, provider_id)


def set_alert_order(connection_id: int, order: int | None) -> None:
    """The connection's place in the practice's Serial order (lower first; None: last)."""
    with _writing() as conn:
        if not slot_repo.set_alert_order(conn, connection_id, order):
            raise NotFoundError(f"no connection {connection_id}")
