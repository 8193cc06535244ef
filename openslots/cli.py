"""`openslots`: run the pipeline's flows and its admin commands. Every command takes --json.

Human output and progress go to stderr-friendly tables; with --json, stdout carries exactly one
JSON document and everything else (Prefect's logs, progress) goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

# Before Prefect is imported: the ephemeral server's telemetry cannot reach the internet from
# a clinic network and logs tracebacks when it tries. A user's explicit setting wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer
from rich.console import Console
from rich.table import Table

from openslots.errors import OpenslotsError, RosterRejectedError
from openslots.reports import batch_report

app = typer.Typer(
    help="openslots: roster imports, invitations and Open Slots alerts as Prefect flows.\n\n"
    "Configuration comes from OPENSLOTS_* environment variables (see README): by default a "
    "SQLite database and file outboxes under ./openslots-data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)
providers_app = typer.Typer(help="Providers and their locations.", no_args_is_help=True)
roster_app = typer.Typer(
    help="Import roster CSV files (the seed's bulk template).", no_args_is_help=True
)
outbox_app = typer.Typer(help="The outgoing message outbox.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(providers_app, name="providers")
app.add_typer(roster_app, name="roster")
app.add_typer(outbox_app, name="outbox")

err = Console(stderr=True)
out = Console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


class Mode(StrEnum):
    invite = "invite"
    sync = "sync"


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _fail(message: str, as_json: bool, code: int = 1, **extra: Any) -> typer.Exit:
    """Report an error (and exit `code`): JSON on stdout with --json, always a line on stderr."""
    if as_json:
        _emit_json({"error": message, **extra})
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _run(as_json: bool, fn: Callable[[], Any]) -> Any:
    """Run a step; project errors become a clear message and exit code 1, never a traceback."""
    try:
        return fn()
    except OpenslotsError as exc:
        raise _fail(str(exc), as_json) from None


def _ensure_schema() -> None:
    from openslots.connectors.database import upgrade_database

    upgrade_database()


# --- db ----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    as_json: JsonOpt = False,
) -> None:
    """Create the schema, or migrate it to the newest revision (safe to run repeatedly)."""
    from openslots.connectors.database import upgrade_database
    from openslots.settings import get_settings

    url = get_settings().resolved_database_url()
    current = _run(as_json, lambda: upgrade_database(revision=revision))
    safe_url = _redact(url)
    if as_json:
        _emit_json({"database": safe_url, "revision": current})
    else:
        err.print(f"database {safe_url} at revision {current}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- providers ---------------------------------------------------------------------------


@providers_app.command("list")
def providers_list(as_json: JsonOpt = False) -> None:
    """List providers with their locations and whether they are EHR-integrated."""
    from sqlalchemy import select

    from openslots.connectors.database import get_engine
    from openslots.connectors.database.models import Location, Provider

    _ensure_schema()
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(Provider.id, Provider.name, Provider.integrated, Location.id, Location.name)
            .outerjoin(Location, Location.provider_id == Provider.id)
            .order_by(Provider.name, Location.name)
        ).all()
    providers: dict[int, dict[str, Any]] = {}
    for pid, name, integrated, lid, lname in rows:
        entry = providers.setdefault(
            pid, {"id": pid, "name": name, "integrated": integrated, "locations": []}
        )
        if lid is not None:
            entry["locations"].append({"id": lid, "name": lname})
    if as_json:
        _emit_json(list(providers.values()))
        return
    table = Table("id", "provider", "integrated", "locations")
    for p in providers.values():
        table.add_row(
            str(p["id"]),
            p["name"],
            "yes" if p["integrated"] else "no",
            ", ".join(loc["name"] for loc in p["locations"]),
        )
    out.print(table)


@providers_app.command("add")
def providers_add(
    name: Annotated[str, typer.Argument(help="Provider name, as the practice calls it.")],
    location: Annotated[
        list[str], typer.Option("--location", "-l", help="A location (repeatable).")
    ] = [],  # noqa: B006
    integrated: Annotated[
        bool, typer.Option(help="EHR-integrated: alerts then need an MRN.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a provider (and locations); an existing one gains the locations given."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.roster import ensure_target

    _ensure_schema()
    if not location:
        raise _fail("give at least one --location", as_json, code=2)
    created: list[dict[str, Any]] = []
    with get_engine().begin() as conn:
        for loc in location:
            target = ensure_target(conn, name, loc, integrated=integrated, create=True)
            created.append(
                {
                    "location": loc,
                    "location_id": target.location_id,
                    "created": target.location_created,
                }
            )
    result = {
        "provider": name,
        "provider_id": target.provider_id,
        "integrated": target.integrated,
        "locations": created,
    }
    if as_json:
        _emit_json(result)
    else:
        err.print(
            f"provider {name!r} (id {target.provider_id}): "
            + ", ".join(c["location"] for c in created)
        )


# --- roster ------------------------------------------------------------------------------


@roster_app.command("template")
def roster_template(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the roster CSV header (the seed's template, with guardian columns)."""
    from openslots.schemas.roster import TEMPLATE_HEADER

    text = TEMPLATE_HEADER + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@roster_app.command("import")
def roster_import(
    path: Annotated[Path, typer.Argument(help="Roster CSV file.", exists=True, dir_okay=False)],
    provider: Annotated[str, typer.Option(help="Provider name (created on first use).")],
    location: Annotated[str, typer.Option(help="Location name (created on first use).")],
    mode: Annotated[
        Mode,
        typer.Option(
            help="invite: the seed's bulk upload, rows of clients already Approved are rejected. "
            "sync: nightly EHR roster, such rows refresh the client instead."
        ),
    ] = Mode.invite,
    strict: Annotated[
        bool,
        typer.Option(
            help="All or nothing: any rejected row fails the file and nothing is written."
        ),
    ] = False,
    integrated: Annotated[
        bool, typer.Option(help="Mark the provider EHR-integrated (alerts then need an MRN).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate a roster and upsert its clients, map MRNs and queue invitations.

    Every data row is accepted or recorded as rejected with its line (header = line 1), field
    and rule; total_rows = accepted + rejected. Exit code 1 when the file as a whole fails
    (missing column, unreadable, --strict with rejections).
    """
    from openslots.flows.roster_sync import roster_sync
    from openslots.tasks import roster as roster_tasks

    _ensure_schema()
    listener = None
    progress = None
    if not as_json and err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("validating"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% {task.fields[rows]} rows"),
            console=err,
            transient=True,
        )
        bar = progress.add_task("rows", total=1.0, rows=0)
        progress.start()

        def listener(rows: int, done: float) -> None:
            progress.update(bar, completed=done, rows=f"{rows:,}")

        roster_tasks.progress_listeners.append(listener)
    try:
        summary = roster_sync(
            str(path.resolve()), provider, location, mode.value, strict, integrated
        )
    except RosterRejectedError as exc:
        _print_import(batch_report(exc.batch_id), as_json)
        raise typer.Exit(1) from None
    except OpenslotsError as exc:
        raise _fail(str(exc), as_json) from None
    finally:
        if progress is not None:
            progress.stop()
        if listener is not None:
            roster_tasks.progress_listeners.remove(listener)
    _print_import(batch_report(int(str(summary["batch_id"]))), as_json)


def _print_import(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(report)
        return
    failed = report["status"] == "failed"
    head = "[red]import failed (strict): nothing written[/red]" if failed else "import completed"
    err.print(f"{head} — batch {report['batch_id']} ({report['mode']})")
    table = Table(show_header=False, box=None)
    for key in (
        "total_rows",
        "accepted",
        "rejected",
        "new_clients",
        "updated_clients",
        "mrns_mapped",
        "needs_review",
        "queued_invitations",
    ):
        table.add_row(key.replace("_", " "), f"{report[key]:,}")
    table.add_row("warnings", f"{len(report['warnings']):,}")
    err.print(table)
    _print_findings("rejected rows", report["rejections"])
    _print_findings("warnings (row accepted)", report["warnings"])
    _print_findings("needs review (row accepted, MRN not mapped)", report["reviews"])


def _print_findings(title: str, findings: list[dict[str, Any]], limit: int = 50) -> None:
    if not findings:
        return
    table = Table("line", "field", "rule", "message", title=title, title_justify="left")
    for f in findings[:limit]:
        table.add_row(str(f["line"]), f["field"], f["rule"], f["message"])
    err.print(table)
    if len(findings) > limit:
        err.print(
            f"... and {len(findings) - limit:,} more (`openslots roster rejections` lists them all)"
        )


@roster_app.command("rejections")
def roster_rejections(
    batch_id: Annotated[int, typer.Argument(help="Import batch id (printed by `roster import`).")],
    as_json: JsonOpt = False,
) -> None:
    """Every finding of an import batch: rejected rows, warnings and rows needing review."""
    from sqlalchemy.exc import NoResultFound

    _ensure_schema()
    try:
        report = batch_report(batch_id)
    except NoResultFound:
        raise _fail(f"no import batch {batch_id}", as_json) from None
    if as_json:
        _emit_json({k: report[k] for k in ("batch_id", "rejections", "warnings", "reviews")})
        return
    _print_findings("rejected rows", report["rejections"], limit=sys.maxsize)
    _print_findings("warnings (row accepted)", report["warnings"], limit=sys.maxsize)
    _print_findings("needs review", report["reviews"], limit=sys.maxsize)


# --- outbox ------------------------------------------------------------------------------


@outbox_app.command("send")
def outbox_send(
    limit: Annotated[int | None, typer.Option(help="Send at most this many messages.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the dispatch flow: send pending emails and texts, each exactly once."""
    from openslots.flows.dispatch import dispatch
    from openslots.settings import get_settings

    _ensure_schema()
    counts = _run(as_json, lambda: dispatch(limit))
    counts["outbox_dir"] = str(get_settings().resolved_outbox_dir())
    if as_json:
        _emit_json(counts)
    else:
        err.print(
            f"sent {counts['sent']:,} of {counts['claimed']:,} claimed messages "
            f"({counts['failed']} failed, {counts['unknown']} unknown, "
            f"{counts['cancelled']} cancelled); files in {counts['outbox_dir']}"
        )


@outbox_app.command("status")
def outbox_status(as_json: JsonOpt = False) -> None:
    """Messages per channel and status."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.outbox import status_counts

    _ensure_schema()
    with get_engine().connect() as conn:
        counts = status_counts(conn)
    if as_json:
        _emit_json(counts)
        return
    table = Table("channel:status", "messages")
    for key, value in sorted(counts.items()):
        table.add_row(key, f"{value:,}")
    out.print(table)


# --- demo --------------------------------------------------------------------------------


@app.command()
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
    # The demo always uses its own embedded defaults, whatever the shell has configured.
    os.environ["OPENSLOTS_HOME"] = str(directory)
    for name in ("OPENSLOTS_DATABASE_URL", "OPENSLOTS_OUTBOX_DIR"):
        os.environ.pop(name, None)
    from openslots.demo import run_demo

    result = _run(as_json, lambda: run_demo(directory, clients))
    if as_json:
        _emit_json(result)
        return
    err.print(f"\n[bold]openslots demo[/bold] in {directory}")
    for imp in result["imports"]:
        err.print(f"\n{imp['provider']} / {imp['location']} — {imp['file']} (mode {imp['mode']})")
        table = Table(show_header=False, box=None)
        for key in (
            "total_rows",
            "accepted",
            "rejected",
            "new_clients",
            "mrns_mapped",
            "needs_review",
            "queued_invitations",
        ):
            table.add_row(key.replace("_", " "), str(imp[key]))
        err.print(table)
        for rej in imp["rejections"]:
            err.print(f"  line {rej['line']}: {rej['field']} — {rej['message']}", highlight=False)
        for warn in imp["warnings"]:
            err.print(f"  line {warn['line']} (warning): {warn['message']}", highlight=False)
    d = result["dispatch"]
    err.print(
        f"\ndispatched: {d['sent']} messages sent "
        f"({d['by_channel'].get('email', 0)} emails, {d['by_channel'].get('sms', 0)} texts)"
    )
    err.print(f"emails (.eml): {result['email_dir']}")
    err.print(f"texts (.json): {result['sms_dir']}")
    err.print(f"database: {result['database']}")
    err.print(
        "\nPrefect UI: run `prefect server start`, then in another shell "
        "`export PREFECT_API_URL=http://127.0.0.1:4200/api` and run the demo again; "
        "the runs, logs and import reports appear at http://127.0.0.1:4200"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
