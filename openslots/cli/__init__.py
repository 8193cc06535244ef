"""`openslots`: run the pipeline's flows and its admin commands. Every command but `roster
template` and `hl7 listen` takes --json.

Results go to stdout (tables, never cut at 80 columns when redirected; with --json exactly one
JSON document); logs, progress, warnings and errors go to stderr.

One module per command group; each calls a flow (imports, dispatch, HL7 ingest) or a function
of `openslots.api` (reads and commands that open their own transaction). No SQL here. Only
`db upgrade` and `demo` migrate the schema; every other command on an unmigrated or older
database exits 1 and says to run `openslots db upgrade`. Output helpers live in `output.py`.
"""

from __future__ import annotations

import os

# Before Prefect is imported: the ephemeral server's telemetry cannot reach the internet from
# a clinic network and logs tracebacks when it tries. A user's explicit setting wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A flow command without PREFECT_API_URL starts Prefect's temporary server, which must answer
# within 20 s by default: on a busy 2-core machine it took longer and `openslots demo` ended
# in a traceback. 90 s, unless the user set it.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

import typer

from openslots.cli import (
    connections,
    db,
    demo,
    hl7,
    invitations,
    invite,
    opt_out,
    outbox,
    prefect_blocks,
    providers,
    registrations,
    roster,
    serve,
    slots,
    sms,
    unsubscribe,
    web,
)
from openslots.serve import adopt_served_api

# While `openslots serve` runs for this OPENSLOTS_HOME, flows report to its Prefect server
# instead of a temporary one started for each command (PREFECT_API_URL still wins). No module
# above imports Prefect (tests/cli/test_lazy_imports.py), so this comes before it reads it.
adopt_served_api()

__all__ = ["app", "main"]

app = typer.Typer(
    help="openslots: roster imports, invitations and Open Slots alerts as Prefect flows.\n\n"
    "Configuration comes from OPENSLOTS_* environment variables (see README): by default a "
    "SQLite database and file outboxes under ./openslots-data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Registration order is the order `openslots --help` lists them in.
app.command("audit")(opt_out.audit_command)
app.command("opt-out")(opt_out.opt_out_command)
app.command("opt-in")(opt_out.opt_in_command)
app.command("unsubscribe")(unsubscribe.unsubscribe_command)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve_command)
app.add_typer(db.app, name="db")
app.add_typer(providers.app, name="providers")
app.add_typer(roster.app, name="roster")
app.add_typer(outbox.app, name="outbox")
app.add_typer(sms.app, name="sms")
app.add_typer(invite.app, name="invite")
app.add_typer(invitations.app, name="invitations")
app.add_typer(connections.app, name="connections")
app.add_typer(registrations.app, name="registrations")
app.add_typer(hl7.app, name="hl7")
app.add_typer(slots.app, name="slots")
app.command("web")(web.web_command)
app.add_typer(prefect_blocks.app, name="prefect")


def main() -> None:
    """The console entry point: Ctrl-C and SIGTERM end any command with one line and exit 130
    (commands with work to undo catch `Interrupted` first and say what they kept)."""
    import sys

    from openslots.cli.output import Interrupted, interrupted, trap_signals

    trap_signals()
    try:
        app()
    except Interrupted as exc:
        code = interrupted(
            exc, "stopped; what was committed is kept, a transaction in progress was rolled back"
        ).exit_code
        sys.exit(code)
