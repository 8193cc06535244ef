"""`openslots registrations`: apply mobile-app registrations (the registrations flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, print_findings, require_schema, run

app = typer.Typer(help="Mobile-app registrations.", no_args_is_help=True)


@app.command("import")
def registrations_import_command(
    path: Annotated[
        Path, typer.Argument(help="CSV or JSON-lines file.", exists=True, dir_okay=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Apply mobile registrations: DOB matches approve at once, others register or request.

    Fields: email, date_of_birth, first_name, last_name, mobile_phone, provider, location,
    and for a guardian registering a dependent: dependent_first_name, dependent_last_name,
    dependent_date_of_birth.
    """
    from openslots.flows.registrations import registrations_import

    require_schema(as_json)
    counts: dict[str, Any] = run(as_json, lambda: registrations_import(str(path.resolve())))
    if as_json:
        emit_json(counts)
        return
    err.print(
        f"{counts['registrations']} registrations: {counts['dob_matches']} approved by "
        f"Date of Birth Match, {counts['registered']} registered, "
        f"{counts['pending_requests']} pending requests, {counts['rejected']} rejected"
    )
    print_findings("rejected", counts["rejections"])
