"""What leaves and comes back: the outbox operator's commands, the unsubscribe link and
inbound SMS keywords."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openslots.api._session import (
    NotFoundError,
    _reading,
    _writing,
)
from openslots.connectors.database import (
    opt_outs,
    outbox_admin,
)
from openslots.connectors.database.models import Channel, OutboxStatus
from openslots.domain.inbound import InboundAction, inbound_action, phone_key
from openslots.domain.tokens import read_token
from openslots.errors import InvalidToken, OpenslotsError
from openslots.resources import resources

# --- outbox ----------------------------------------------------------------------------------


def outbox_status() -> dict[str, int]:
    """Messages per `channel:status`."""
    with _reading() as conn:
        return outbox_admin.status_counts(conn)


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
