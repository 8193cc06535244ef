"""`openslots demo`: the whole pipeline on synthetic patients, in a directory of its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, out, run

DEMO_COUNTS = [
    "total_rows",
    "accepted",
    "rejected",
    "new_clients",
    "mrns_mapped",
    "needs_review",
    "queued_invitations",
]


def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Working directory to create.")] = Path(
        "openslots-demo"
    ),
    clients: Annotated[int, typer.Option(help="Synthetic clients per provider.", min=10)] = 150,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole pipeline on synthetic patients with embedded defaults.

    Creates DIR with a SQLite database and file outboxes, writes two synthetic rosters (one for
    an EHR-integrated provider, with some connections already registered from the mobile app),
    runs the roster sync flow on each, dispatches the invitations and prints a summary.
    """
    directory = directory.resolve()
    # The demo always uses its own embedded defaults, whatever the shell has configured: its
    # synthetic patients never reach a real relay or Twilio, and its texts are not held for
    # the morning by quiet hours (a demo run at night would otherwise show no text at all).
    os.environ["OPENSLOTS_HOME"] = str(directory)
    for name in ("OPENSLOTS_DATABASE_URL", "OPENSLOTS_OUTBOX_DIR", "OPENSLOTS_TEMPLATES_DIR"):
        os.environ.pop(name, None)
    os.environ["OPENSLOTS_EMAIL_BACKEND"] = "file"
    os.environ["OPENSLOTS_SMS_BACKEND"] = "file"
    os.environ["OPENSLOTS_SMS_QUIET_HOURS"] = "off"
    from openslots.demo import run_demo

    # The demo migrates its own database (run_demo upgrades it): it is the one command besides
    # `db upgrade` that may, since the database is its own.
    result = run(as_json, lambda: run_demo(directory, clients))
    if as_json:
        emit_json(result)
        return
    out.print(f"\n[bold]openslots demo[/bold] in {directory}")
    for imp in result["imports"]:
        out.print(f"\n{imp['provider']} / {imp['location']} — {imp['file']} (mode {imp['mode']})")
        table = Table(show_header=False, box=None)
        for key in DEMO_COUNTS:
            table.add_row(key.replace("_", " "), str(imp[key]))
        out.print(table)
        for rej in imp["rejections"]:
            out.print(f"  line {rej['line']}: {rej['field']} — {rej['message']}", highlight=False)
        for warn in imp["warnings"]:
            out.print(f"  line {warn['line']} (warning): {warn['message']}", highlight=False)
    d = result["dispatch"]
    out.print(
        f"\ndispatched: {d['sent']} messages sent "
        f"({d['by_channel'].get('email', 0)} emails, {d['by_channel'].get('sms', 0)} texts)"
    )
    out.print(f"emails (.eml): {result['email_dir']}")
    out.print(f"texts (.json): {result['sms_dir']}")
    out.print(f"database: {result['database']}")
    out.print(
        "\nPrefect UI: run `openslots serve` in this directory (another terminal), then the "
        "demo again: its runs, logs and import reports appear at http://127.0.0.1:4200"
    )
    out.print(
        "\nNext, with your own data (`openslots db upgrade` first):\n"
        "  openslots roster template --output roster.csv      # the columns to fill\n"
        '  openslots roster import roster.csv --provider "Dr. Rivera" --location "Main St"\n'
        '  openslots invitations list --provider "Dr. Rivera"   # who was invited\n'
        "  openslots outbox send                              # send what is queued\n"
        "  openslots roster batches                           # every import and its outcome",
        highlight=False,
    )
