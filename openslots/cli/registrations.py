"""`openslots registrations`: apply mobile-app registrations (the registrations flow)."""

from __future__ import annotations

import sys
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
        f"{counts['pending_requests']} pending requests, {counts['rejected']} rejected "
        f"(batch {counts['batch_id']}: `openslots registrations rejections {counts['batch_id']}`)"
    )
    print_findings("rejected", counts["rejections"])


@app.command("rejections")
def registrations_rejections(
    batch_id: Annotated[
        int, typer.Argument(help="Import batch id (`batch_id`, printed by `registrations import`).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Every finding of a registrations import: rejected lines and warnings (line, field, rule)."""
    from openslots.api import registration_rejections

    report = run(as_json, lambda: registration_rejections(batch_id))
    if as_json:
        emit_json(report)
        return
    print_findings("rejected", report["rejections"], limit=sys.maxsize)
    print_findings("warnings (registration applied)", report["warnings"], limit=sys.maxsize)
