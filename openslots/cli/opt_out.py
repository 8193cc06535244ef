"""`openslots opt-out`, `opt-in` and `audit`: who may be contacted, and who changed what."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import ActorOpt, JsonOpt, ProviderOpt, ReasonOpt, actor_or_user
from openslots.cli.output import USAGE, emit_json, err, fail, run, table


def audit_command(
    connection: Annotated[int | None, typer.Option(help="Connection id.")] = None,
    invitation: Annotated[int | None, typer.Option(help="Invitation id.")] = None,
    outbox: Annotated[int | None, typer.Option(help="Outbox message id.")] = None,
    provider: Annotated[
        int | None, typer.Option(help="Provider id (feed, integrated, name, merges).")
    ] = None,
    slot: Annotated[int | None, typer.Option(help="Slot id (reconciled by whom).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every recorded change of a connection, invitation, outbox message, provider or slot:
    who, when, from, to, why."""
    from openslots.api import audit_events

    given = {
        "connection": connection,
        "invitation": invitation,
        "outbox": outbox,
        "provider": provider,
        "slot": slot,
    }
    chosen = [(entity, value) for entity, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise fail(
            "give exactly one of --connection, --invitation, --outbox, --provider or --slot",
            as_json,
            code=USAGE,
        )
    [(entity, entity_id)] = chosen
    events = run(as_json, lambda: audit_events(entity, int(entity_id or 0)))
    if as_json:
        emit_json(events)
        return
    table(events, ["at", "actor", "action", "from", "to", "reason"])


def _opt(
    opt_in: bool,
    provider: str,
    email: str | None,
    phone: str | None,
    reason: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    from openslots import api
    from openslots.domain.normalise import email_value
    from openslots.domain.phone import to_e164
    from openslots.settings import get_settings

    if (email is None) == (phone is None):
        raise fail("give exactly one of --email or --phone", as_json, code=USAGE)
    if email is not None:
        channel, address = "email", email_value(email)
    else:
        channel = "sms"
        address = to_e164(phone or "", get_settings().phone_region) or ""
        if not address:
            raise fail("--phone is not a valid mobile number", as_json, code=USAGE)
    action = api.opt_in if opt_in else api.opt_out
    changed = run(as_json, lambda: action(provider, channel, address, actor_or_user(actor), reason))
    word = "opted in" if opt_in else "opted out"
    if as_json:
        emit_json(
            {
                "provider": provider,
                "channel": channel,
                "action": word,
                "invitations_changed": changed,
            }
        )
    else:
        err.print(f"{word} of {provider}'s messages ({channel}); {changed} invitation(s) changed")


def opt_out_command(
    provider: ProviderOpt,
    email: Annotated[str | None, typer.Option(help="The email that opts out.")] = None,
    phone: Annotated[str | None, typer.Option(help="The mobile phone that opts out.")] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Never contact this email or phone for this provider again, on any channel."""
    _opt(False, provider, email, phone, reason, actor, as_json)


def opt_in_command(
    provider: ProviderOpt,
    email: Annotated[str | None, typer.Option(help="The email that opts back in.")] = None,
    phone: Annotated[str | None, typer.Option(help="The mobile phone that opts back in.")] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reverse an opt-out (audited); invitations return to their earlier status."""
    _opt(True, provider, email, phone, reason, actor, as_json)
