"""`openslots providers`: list and add providers and their locations."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from openslots.cli.options import JsonOpt
from openslots.cli.output import USAGE, emit_json, err, fail, out, run

app = typer.Typer(help="Providers and their locations.", no_args_is_help=True)


@app.command("list")
def providers_list(as_json: JsonOpt = False) -> None:
    """List providers with their locations and whether they are EHR-integrated."""
    from openslots.api import list_providers

    providers = run(as_json, list_providers)
    if as_json:
        emit_json(providers)
        return
    table = Table("id", "provider", "integrated", "locations")
    for p in providers:
        table.add_row(
            str(p["id"]),
            p["name"],
            "yes" if p["integrated"] else "no",
            ", ".join(loc["name"] for loc in p["locations"]),
        )
    out.print(table)


@app.command("add")
def providers_add(
    name: Annotated[str, typer.Argument(help="Provider name, as the practice calls it.")],
    location: Annotated[
        list[str], typer.Option("--location", "-l", help="A location (repeatable).")
    ] = [],  # noqa: B006
    integrated: Annotated[
        bool, typer.Option(help="EHR-integrated: alerts then need an MRN.")
    ] = False,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="IANA time zone of the locations given (slot times, alert quiet hours); "
            "default OPENSLOTS_DEFAULT_TIMEZONE."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a provider (and locations); an existing one gains the locations given."""
    from openslots.api import add_provider

    if not location:
        raise fail("give at least one --location", as_json, code=USAGE)
    result = run(as_json, lambda: add_provider(name, location, integrated, timezone))
    if as_json:
        emit_json(result)
    else:
        err.print(
            f"provider {name!r} (id {result['provider_id']}): "
            + ", ".join(c["location"] for c in result["locations"])
        )


@app.command("set-cadence")
def providers_set_cadence(
    name: Annotated[str, typer.Argument(help="Provider name.")],
    cadence: Annotated[
        str,
        typer.Argument(
            help="Days after an invitation's first send on which it is resent while still "
            "Sent, increasing and comma-separated (21,30,60,90,120); `default` follows "
            "OPENSLOTS_RESEND_CADENCE again."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Set a provider's own automatic resend cadence (the seed's 21/30/60/90/120 days)."""
    from openslots.api import set_resend_cadence

    result = run(as_json, lambda: set_resend_cadence(name, cadence))
    if as_json:
        emit_json(result)
    else:
        err.print(
            f"provider {name!r}: resend cadence {','.join(map(str, result['cadence']))} days "
            f"({'its own' if result['source'] == 'provider' else 'the setting'})"
        )
