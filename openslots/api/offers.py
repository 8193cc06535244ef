"""The patient's side of an offer's link: what the claim page shows, "Not for me", and the
page's "viewed" beacon. Claiming itself is `claim_slot` (openslots.api.slots)."""

from __future__ import annotations

from typing import Any

from openslots.api._session import NotFoundError
from openslots.connectors.database import offer_responses
from openslots.domain.offer_responses import page_state
from openslots.domain.offers import CLAIM_PURPOSE, ClaimResult, format_start, token_refusal
from openslots.domain.tokens import read_token
from openslots.errors import InvalidToken
from openslots.resources import resources


def _offer_id(token: str) -> int:
    """The offer a claim token names; InvalidToken (with its reason) otherwise."""
    res = resources()
    subject = read_token(res.secret_key(), token, CLAIM_PURPOSE, res.now())
    if not subject.isdigit():
        raise InvalidToken("malformed")
    return int(subject)


def offer_page(token: str) -> dict[str, Any]:
    """What the claim page shows: `{"slot_id", "state", "provider", "location", "starts",
    "minutes", "visit_type"}`, `state` one of claimable / won / declined / unavailable (never
    who else was offered it or won it). Changes nothing. InvalidToken for a malformed, altered
    or expired link (its reason says which); NotFoundError when it names no offer sent."""
    res = resources()
    offer_id = _offer_id(token)
    now = res.now()
    with res.require_current_schema().connect() as conn:
        view = offer_responses.offer_view(conn, offer_id)
    if view is None:
        raise NotFoundError("this link names no offer")
    state = page_state(
        view["status"],
        claimed_offer_id=view["claimed_offer_id"],
        offer_id=offer_id,
        declined=view["declined_at"] is not None,
        starts_at=view["starts_at"],
        now=now,
    )
    zone = view["timezone"] or res.settings.default_timezone
    return {
        "slot_id": view["slot_id"],
        "state": str(state),
        "provider": view["provider"],
        "location": view["location"],
        "starts": None if view["starts_at"] is None else format_start(view["starts_at"], zone),
        "minutes": view["duration_minutes"],
        "visit_type": view["visit_type"],
    }


def decline_offer(token: str) -> dict[str, Any]:
    """ "Not for me": `{"slot_id", "result"}`, result `declined` (final for this patient and
    slot, idempotent, whatever became of the slot since), `won` when this link's claim already
    won, `expired` or `invalid`. In a Serial alert the next group is offered at once."""
    from openslots.tasks.offers import offer_due

    res = resources()
    try:
        offer_id = _offer_id(token)
    except InvalidToken as exc:
        return {"slot_id": None, "result": str(token_refusal(exc.reason))}
    engine = res.require_current_schema()
    now = res.now()
    with engine.begin() as conn:
        slot_id, result = offer_responses.decline(conn, offer_id, now)
    if result is ClaimResult.DECLINED and slot_id is not None:
        offer_due(engine, res.settings, now, [slot_id])  # the next Serial group, if now due
    return {"slot_id": slot_id, "result": str(result)}


def mark_offer_viewed(token: str) -> dict[str, Any]:
    """The claim page's beacon: the offer is `viewed` (the first time kept; nothing about the
    browser). `{"slot_id", "viewed": true}`; InvalidToken / NotFoundError as `offer_page`."""
    res = resources()
    offer_id = _offer_id(token)
    with res.require_current_schema().begin() as conn:
        slot_id = offer_responses.mark_viewed(conn, offer_id, res.now())
    if slot_id is None:
        raise NotFoundError("this link names no offer")
    return {"slot_id": slot_id, "viewed": True}
