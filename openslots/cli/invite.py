"""`openslots invite`: invite one client, or one dependent through their guardian."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openslots.cli.options import JsonOpt, ProviderOpt
from openslots.cli.output import emit_json, err, run

app = typer.Typer(help="Invite one client or one dependent.", no_args_is_help=True)


def _invite(as_json: bool, **fields: Any) -> None:
    from openslots.api import invite

    report = run(as_json, lambda: invite(**fields))
    ok = report["accepted"] == 1
    if as_json:
        emit_json(report)
    elif ok:
        queued = report["queued_invitations"]
        err.print(
            "invitation queued (send it with `openslots outbox send`)"
            if queued
            else "client updated; already invited at this location, nothing new queued"
        )
    else:
        for rejection in report["rejections"]:
            err.print(f"[red]{rejection['field']}[/red]: {rejection['message']}", highlight=False)
    for warning in report["warnings"]:
        err.print(f"warning: {warning['message']}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@app.command("client")
def invite_client(
    provider: ProviderOpt,
    location: Annotated[str, typer.Option(help="Location name.")],
    client_id: Annotated[str, typer.Option(help="The practice's Client ID / MRN.")],
    first_name: Annotated[str, typer.Option(help="The client's first name.")],
    last_name: Annotated[str, typer.Option(help="The client's last name.")],
    dob: Annotated[str, typer.Option(help="Date of birth, YYYY-MM-DD.")],
    email: Annotated[str, typer.Option(help="The client's email (required).")],
    phone: Annotated[str | None, typer.Option(help="Mobile phone (optional: adds a text).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite one client: every field but the phone is required (same rules as the roster)."""
    _invite(
        as_json,
        provider=provider,
        location=location,
        client_id=client_id,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=dob,
        email=email,
        mobile_phone=phone,
    )


@app.command("dependent")
def invite_dependent(
    provider: ProviderOpt,
    location: Annotated[str, typer.Option(help="Location name.")],
    client_id: Annotated[str, typer.Option(help="The dependent's Client ID / MRN.")],
    first_name: Annotated[str, typer.Option(help="The dependent's first name.")],
    last_name: Annotated[str, typer.Option(help="The dependent's last name.")],
    dob: Annotated[str, typer.Option(help="The dependent's date of birth, YYYY-MM-DD.")],
    guardian_first_name: Annotated[str, typer.Option(help="The guardian's first name.")],
    guardian_last_name: Annotated[str, typer.Option(help="The guardian's last name.")],
    email: Annotated[str, typer.Option(help="The guardian's email (required).")],
    phone: Annotated[str | None, typer.Option(help="The guardian's mobile phone.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite a dependent through their guardian (the guardian's email and phone)."""
    _invite(
        as_json,
        provider=provider,
        location=location,
        client_id=client_id,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=dob,
        email=email,
        mobile_phone=phone,
        guardian_first_name=guardian_first_name,
        guardian_last_name=guardian_last_name,
    )
