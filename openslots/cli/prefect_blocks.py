"""`openslots prefect`: what a fleet's Prefect server needs from openslots (Secret blocks)."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, fail, run, table

app = typer.Typer(
    help="Set up the Prefect server a fleet of workers uses (see README, Deploy).",
    no_args_is_help=True,
)


@app.command("register-blocks")
def register_blocks(
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace blocks that exist already (default: keep them)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create Prefect Secret blocks from this environment's secrets, once, on the server
    PREFECT_API_URL names: openslots-database-url (OPENSLOTS_DATABASE_URL),
    openslots-smtp-password (OPENSLOTS_SMTP_PASSWORD), openslots-twilio-auth-token
    (OPENSLOTS_TWILIO_AUTH_TOKEN), openslots-secret-key (OPENSLOTS_SECRET_KEY).

    Flow runs read a block when their worker's environment does not set the variable, so
    workers need no password. Unset variables are skipped. Values are never printed: with
    --json, `{"api_url", "blocks": [{"block", "setting", "status"}]}`, status one of created,
    updated, exists (kept), unset.
    """
    from prefect.settings import PREFECT_API_URL

    from openslots.connectors.prefect_blocks import as_dicts, register_secret_blocks
    from openslots.settings import Settings

    settings = Settings()  # the environment only: the blocks are what this writes
    outcomes = as_dicts(run(as_json, lambda: register_secret_blocks(settings, overwrite)))
    if all(outcome["status"] == "unset" for outcome in outcomes):
        names = ", ".join(outcome["setting"] for outcome in outcomes)
        raise fail(f"none of {names} is set: nothing to register", as_json)
    if as_json:
        emit_json({"api_url": PREFECT_API_URL.value(), "blocks": outcomes})
        return
    table(outcomes, ["block", "setting", "status"])
    if any(outcome["status"] == "exists" for outcome in outcomes):
        err.print("blocks that exist were kept; --overwrite replaces them")
