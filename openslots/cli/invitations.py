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
from openslots.cli.output import (
    USAGE,
    choice,
    counts_table,
    done,
    emit_json,
    err,
    fail,
    require_schema,
    run,
    table,
)

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


@app.command("resend-due")
def invitations_resend_due(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The day that decides which cadence steps are due (YYYY-MM-DD); default today "
            "in OPENSLOTS_DEFAULT_TIMEZONE.",
        ),
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="Only this provider's invitations (default: all).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what a real run would queue; write nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the invitation-resend flow: queue once the cadence step due for every invitation
    still Sent (days since its first send; only the latest due step, earlier ones skipped as
    superseded). The next `openslots outbox send` sends them."""
    from openslots.flows.invitation_resend import invitation_resend
    from openslots.settings import get_settings
    from openslots.tasks.resend import InvalidAsOf, parse_as_of

    try:
        parse_as_of(as_of, get_settings().default_timezone)
    except InvalidAsOf as exc:
        raise fail(str(exc), as_json, code=USAGE) from None
    require_schema(as_json)
    result = run(as_json, lambda: invitation_resend(as_of, provider, dry_run))
    if as_json:
        emit_json(result)
        return
    skipped = result["skipped"]
    assert isinstance(skipped, dict)
    err.print(
        f"as of {result['as_of']}: {result['due']} due, {result['queued']} "
        + ("would be queued (dry run, nothing written)" if dry_run else "queued")
        + "".join(f", {n} skipped ({reason})" for reason, n in skipped.items())
    )
    by_provider = result["by_provider"]
    assert isinstance(by_provider, dict)
    for name, counts in by_provider.items():
        if counts["due"] or counts["skipped"]:
            err.print(name)
            err.print(counts_table({k: counts[k] for k in ("due", "queued")}))


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
