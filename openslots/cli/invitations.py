"""`openslots invitations`: the seed's Invitations screen, resends and connection requests."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import (
    ActorOpt,
    InvitationIdArg,
    JsonOpt,
    LocationOpt,
    ProviderOpt,
    SortOpt,
    actor_or_user,
)
from openslots.cli.output import USAGE, choice, done, emit_json, err, fail, run, table

app = typer.Typer(help="The seed's Invitations screen.", no_args_is_help=True)

COLUMNS = [
    "id",
    "status",
    "client_id",
    "first_name",
    "last_name",
    "guardian_first_name",
    "guardian_last_name",
    "location",
    "last_sent_at",
    "resend_permitted",
]


@app.command("list")
def invitations_list(
    provider: ProviderOpt,
    location: LocationOpt = None,
    search: Annotated[str | None, typer.Option(help="Client or guardian name.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Queued, Sent, Registered, Invited, Opted-Out, Connected or New."),
    ] = None,
    sort: SortOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invitations of a provider with their status and the last time each was sent."""
    from openslots.api import list_invitations
    from openslots.domain.statuses import InvitationStatus

    status = choice(status, InvitationStatus, "status", as_json)
    try:
        rows = run(
            as_json,
            lambda: list_invitations(provider, location, search=search, status=status, sort=sort),
        )
    except ValueError:
        raise fail(f"unknown status {status!r}", as_json, code=USAGE) from None
    if as_json:
        emit_json(rows)
        return
    table(rows, COLUMNS)


@app.command("resend")
def invitations_resend(
    invitation_id: InvitationIdArg, actor: ActorOpt = None, as_json: JsonOpt = False
) -> None:
    """Queue an invitation again; refused (with the reason) for Opted-Out, Connected and New."""
    from openslots.api import resend_invitation

    key = run(as_json, lambda: resend_invitation(invitation_id, actor_or_user(actor)))
    if as_json:
        emit_json({"invitation_id": invitation_id, "queued": key})
    else:
        err.print(
            f"invitation {invitation_id} queued again ({key}); send it with `openslots outbox send`"
        )


@app.command("request")
def invitations_request(
    invitation_id: InvitationIdArg, actor: ActorOpt = None, as_json: JsonOpt = False
) -> None:
    """Send a provider-initiated request to a Registered client's app (status Invited)."""
    from openslots.api import request_connection

    run(as_json, lambda: request_connection(invitation_id, actor_or_user(actor)))
    done(
        as_json,
        None,
        f"invitation {invitation_id}: request sent to the app (Invited)",
        {"invitation_id": invitation_id, "status": "Invited"},
    )


@app.command("accept")
def invitations_accept(invitation_id: InvitationIdArg, as_json: JsonOpt = False) -> None:
    """Record the client's acceptance of a request (what the app's backend reports): the
    connection is approved and the invitation becomes Connected."""
    from openslots.api import accept_connection_request

    connection_id = run(as_json, lambda: accept_connection_request(invitation_id))
    done(
        as_json,
        connection_id,
        f"invitation {invitation_id}: accepted, connection approved (Connected)",
        {"invitation_id": invitation_id, "status": "Connected"},
    )
