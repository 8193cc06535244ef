"""`openslots outbox`: send what is due (the dispatch flow) and count messages by status."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, out, require_schema, run

app = typer.Typer(help="The outgoing message outbox.", no_args_is_help=True)


@app.command("send")
def outbox_send(
    limit: Annotated[int | None, typer.Option(help="Send at most this many messages.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the dispatch flow: write the messages owed invitations need, then send pending emails
    and texts, each exactly once."""
    from openslots.flows.dispatch import dispatch
    from openslots.settings import get_settings

    require_schema(as_json)
    counts = run(as_json, lambda: dispatch(limit))
    counts["outbox_dir"] = str(get_settings().resolved_outbox_dir())
    if as_json:
        emit_json(counts)
    else:
        err.print(
            f"sent {counts['sent']:,} of {counts['claimed']:,} claimed messages "
            f"({counts['failed']} failed, {counts['unknown']} unknown, {counts['dead']} dead, "
            f"{counts['cancelled']} cancelled); files in {counts['outbox_dir']}"
        )


@app.command("status")
def outbox_status(as_json: JsonOpt = False) -> None:
    """Messages per channel and status."""
    from openslots.api import outbox_status as status_counts

    counts = run(as_json, status_counts)
    if as_json:
        emit_json(counts)
        return
    table = Table("channel:status", "messages")
    for key, value in sorted(counts.items()):
        table.add_row(key, f"{value:,}")
    out.print(table)
