"""`openslots db`: the only command (with `demo`) that creates or migrates the schema."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, run

app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Create the schema, or migrate it to the newest revision (safe to run repeatedly)."""
    from openslots.api import upgrade_schema

    result = run(as_json, lambda: upgrade_schema(revision))
    if as_json:
        emit_json(result)
    else:
        err.print(f"database {result['database']} at revision {result['revision']}")
