"""Open Slots: open a slot, claim it through a token, close it, and say why each connection
was or was not alerted."""

from __future__ import annotations

from typing import Any

from openslots.api._session import (
    NotFoundError,
    _reading,
    _writing,
)
from openslots.connectors.database import (
    offer_responses,
    providers,
    slot_reports,
)
from openslots.connectors.database import slots as slot_repo
from openslots.domain.tokens import read_token
from openslots.errors import InvalidToken, OpenslotsError
from openslots.resources import resources

# --- Open Slots -----------------------------------------------------------------------------


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
    from openslots.events import slots_opened
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
        eligible = (
            0
            if late
            else slot_repo.offer_slot(
                conn,
                slot_id,
                now,
                max_per_week=res.settings.alert_max_per_week,
                default_timezone=res.settings.default_timezone,
            )
        )
    queued = 0 if late else offer_due(engine, res.settings, now, [slot_id]).offers_sent
    if not late:
        slots_opened([slot_id])  # after the offers are queued: the trigger's run adds none
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
        if result is ClaimResult.WON and slot_id is not None:
            # In the claim's own transaction: a won slot always owes its confirmation.
            offer_responses.queue_claim_messages(
                conn, now, notify_taken=res.settings.alert_notify_taken, slot_ids=[slot_id]
            )
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
    settings = resources().settings
    with _reading() as conn:
        rows = slot_reports.explain_slot(
            conn,
            slot_id,
            max_per_week=settings.alert_max_per_week,
            default_timezone=settings.default_timezone,
        )
    if rows is None:
        raise NotFoundError(f"no slot {slot_id}")
    return rows


def list_slots(
    status: str | None = None,
    provider: str | None = None,
    *,
    unreconciled: bool = False,
    conflicts: bool = False,
) -> list[dict[str, Any]]:
    """Slots, newest first, with offers sent, claims tried and the winner's connection id, and
    `reconciled_at` / `reconciled_by` / `conflict_at` / `conflict_message_id`. `unreconciled`:
    only claimed slots not reconciled OPENSLOTS_RECONCILE_AFTER_HOURS after the claim;
    `conflicts`: only claimed slots an SIU^S12 for another patient collided with."""
    from openslots.domain.reconcile import unreconciled_cutoff
    from openslots.domain.statuses import SlotStatus

    try:
        wanted = None if status is None else SlotStatus(status)
    except ValueError:
        raise OpenslotsError("status: expected open, claimed or closed") from None
    res = resources()
    cutoff = unreconciled_cutoff(res.now(), res.settings.reconcile_after_hours)
    with _reading() as conn:
        provider_id = None if provider is None else providers.provider_id_for(conn, provider)
        return slot_reports.list_slots(
            conn,
            wanted,
            provider_id,
            unreconciled_before=cutoff if unreconciled else None,
            conflicts=conflicts,
        )


def reconcile_slot(slot_id: int, actor: str) -> dict[str, Any]:
    """Record that a scheduler moved the claimed slot into the EHR's calendar (audited with
    `actor`): `{"slot_id", "changed", "reconciled_at", "reconciled_by"}`; again: `changed`
    False and the first record. NotFoundError for an unknown id; OpenslotsError unless claimed.
    """
    res = resources()
    with _writing() as conn:
        result = slot_repo.reconcile(conn, slot_id, actor, res.now())
    if result is None:
        raise NotFoundError(f"no slot {slot_id}")
    return result


def set_alert_order(connection_id: int, order: int | None) -> None:
    """The connection's place in the practice's Serial order (lower first; None: last)."""
    with _writing() as conn:
        if not slot_repo.set_alert_order(conn, connection_id, order):
            raise NotFoundError(f"no connection {connection_id}")
