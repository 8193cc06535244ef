"""`openslots providers`: list and add providers and their locations."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from openslots.cli.options import ActorOpt, JsonOpt, ReasonOpt, actor_or_user
from openslots.cli.output import USAGE, changed, emit_json, err, fail, out, run

app = typer.Typer(
    help="Providers and their locations, their HL7 feed, EHR integration, names and merges.",
    no_args_is_help=True,
)


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


ProviderArg = Annotated[str, typer.Argument(help="Provider name, as `providers list` shows it.")]


@app.command("set-feed")
def providers_set_feed(
    name: ProviderArg,
    application: Annotated[
        str, typer.Option(help="The feed's sending application (MSH-3), e.g. EPIC.")
    ],
    facility: Annotated[str, typer.Option(help="The feed's sending facility (MSH-4).")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the HL7 feed whose MRNs this provider's connections carry (audited).

    ADT^A40 merges from that sending application and facility, and only those, rewrite MRNs
    at this provider. A provider a feed created is recorded as fed by it; a provider with no
    feed recorded (created by hand or before feeds were recorded) takes merges from any feed.
    """
    from openslots.api import set_provider_feed

    result = run(
        as_json, lambda: set_provider_feed(name, application, facility, actor_or_user(actor))
    )
    changed(as_json, f"provider {name!r}: fed by {application}^{facility}", result)


@app.command("set-integrated")
def providers_set_integrated(
    name: ProviderArg,
    off: Annotated[
        bool, typer.Option("--off", help="Mark it not EHR-integrated (alerts need no MRN).")
    ] = False,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a provider EHR-integrated: from then on only connections with an MRN are alerted
    (audited). A feed message never does this to an existing provider."""
    from openslots.api import set_provider_integrated

    result = run(
        as_json,
        lambda: set_provider_integrated(name, not off, actor_or_user(actor), reason),
    )
    state = "EHR-integrated" if result["to"] else "not EHR-integrated"
    changed(as_json, f"provider {name!r}: {state}", result)


@app.command("rename")
def providers_rename(
    old: Annotated[str, typer.Argument(help="The provider's current name.")],
    new: Annotated[str, typer.Argument(help="Its new name (not used by another provider).")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename a provider, e.g. the "Given Family (ID)" a feed created (audited)."""
    from openslots.api import rename_provider

    result = run(as_json, lambda: rename_provider(old, new, actor_or_user(actor)))
    changed(as_json, f"provider {old!r} is now {new!r}", result)


@app.command("merge")
def providers_merge(
    source: Annotated[str, typer.Argument(help="The provider to merge away (deleted after).")],
    target: Annotated[str, typer.Argument(help="The provider that receives everything.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move a provider's locations, clients, connections, invitations, slots and opt-outs into
    another, then delete it (audited on the target, which keeps its own settings).

    A location of the same name becomes the target's; a client with the same Client ID folds
    into the target's (where both were invited to one location, the target's invitation stays);
    an opt-out is never lost.
    """
    from openslots.api import merge_providers

    result = run(as_json, lambda: merge_providers(source, target, actor_or_user(actor)))
    changed(
        as_json,
        f"provider {source!r} merged into {target!r}: "
        + ", ".join(
            f"{k.replace('_', ' ')} {v}"
            for k, v in result.items()
            if isinstance(v, int) and k != "provider_id"
        ),
        result,
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
