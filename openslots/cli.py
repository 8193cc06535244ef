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
invite_app = typer.Typer(help="Invite one client or one dependent.", no_args_is_help=True)
invitations_app = typer.Typer(help="The seed's Invitations screen.", no_args_is_help=True)
connections_app = typer.Typer(help="The seed's Connections screen.", no_args_is_help=True)
registrations_app = typer.Typer(help="Mobile-app registrations.", no_args_is_help=True)
app.add_typer(invite_app, name="invite")
app.add_typer(invitations_app, name="invitations")
app.add_typer(connections_app, name="connections")
app.add_typer(registrations_app, name="registrations")
hl7_app = typer.Typer(
    help="HL7 v2 feeds (ADT patients, SIU schedules): files and MLLP.", no_args_is_help=True
)
app.add_typer(hl7_app, name="hl7")

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


# --- invitations and connections (the seed's two screens) --------------------------------

ProviderOpt = Annotated[str, typer.Option(help="Provider name.")]
LocationOpt = Annotated[str | None, typer.Option(help="Location name (default: all).")]
SortOpt = Annotated[str | None, typer.Option(help="COLUMN or COLUMN:desc.")]
ActorOpt = Annotated[str | None, typer.Option(help="Who makes the change (default: your user).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why, for the audit log.")]


def _actor(actor: str | None) -> str:
    import getpass

    return actor or getpass.getuser()


def _ids(provider: str, location: str | None) -> tuple[int, int | None]:
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.lifecycle import location_id_for, provider_id_for

    with get_engine().connect() as conn:
        provider_id = provider_id_for(conn, provider)
        location_id = location_id_for(conn, provider_id, location) if location else None
    return provider_id, location_id


def _invite(as_json: bool, **fields: Any) -> None:
    from openslots.api import invite

    _ensure_schema()
    report = _run(as_json, lambda: invite(**fields))
    ok = report["accepted"] == 1
    if as_json:
        _emit_json(report)
    elif ok:
        queued = report["queued_invitations"]
        err.print(
            "invitation queued (send it with `openslots outbox send`)"
            if queued
            else "client updated; already invited at this location, nothing new queued"
        )
    else:
        for rejection in report["rejections"]:
            err.print(f"[red]{rejection['field']}[/red]: {rejection['message']}", highlight=False)
    for warning in report["warnings"]:
        err.print(f"warning: {warning['message']}", highlight=False)
    if not ok:
        raise typer.Exit(1)


@invite_app.command("client")
def invite_client(
    provider: ProviderOpt,
    location: Annotated[str, typer.Option(help="Location name.")],
    client_id: Annotated[str, typer.Option(help="The practice's Client ID / MRN.")],
    first_name: Annotated[str, typer.Option()],
    last_name: Annotated[str, typer.Option()],
    dob: Annotated[str, typer.Option(help="Date of birth, YYYY-MM-DD.")],
    email: Annotated[str, typer.Option(help="The client's email (required).")],
    phone: Annotated[str | None, typer.Option(help="Mobile phone (optional: adds a text).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite one client: every field but the phone is required (same rules as the roster)."""
    _invite(
        as_json,
        provider=provider,
        location=location,
        client_id=client_id,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=dob,
        email=email,
        mobile_phone=phone,
    )


@invite_app.command("dependent")
def invite_dependent(
    provider: ProviderOpt,
    location: Annotated[str, typer.Option(help="Location name.")],
    client_id: Annotated[str, typer.Option(help="The dependent's Client ID / MRN.")],
    first_name: Annotated[str, typer.Option(help="The dependent's first name.")],
    last_name: Annotated[str, typer.Option(help="The dependent's last name.")],
    dob: Annotated[str, typer.Option(help="The dependent's date of birth, YYYY-MM-DD.")],
    guardian_first_name: Annotated[str, typer.Option()],
    guardian_last_name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option(help="The guardian's email (required).")],
    phone: Annotated[str | None, typer.Option(help="The guardian's mobile phone.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite a dependent through their guardian (the guardian's email and phone)."""
    _invite(
        as_json,
        provider=provider,
        location=location,
        client_id=client_id,
        first_name=first_name,
        last_name=last_name,
        date_of_birth=dob,
        email=email,
        mobile_phone=phone,
        guardian_first_name=guardian_first_name,
        guardian_last_name=guardian_last_name,
    )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    out.print(table)


@invitations_app.command("list")
def invitations_list(
    provider: ProviderOpt,
    location: LocationOpt = None,
    search: Annotated[str | None, typer.Option(help="Client or guardian name.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Queued, Sent, Registered, Invited, Opted-Out, Connected or New."),
    ] = None,
    sort: SortOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invitations of a provider with their status and the last time each was sent."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.listings import list_invitations

    _ensure_schema()
    provider_id, location_id = _run(as_json, lambda: _ids(provider, location))

    def query() -> list[dict[str, Any]]:
        with get_engine().connect() as conn:
            return list_invitations(
                conn, provider_id, location_id=location_id, search=search, status=status, sort=sort
            )

    try:
        rows = _run(as_json, query)
    except ValueError:
        raise _fail(f"unknown status {status!r}", as_json, code=2) from None
    if as_json:
        _emit_json(rows)
        return
    _table(
        rows,
        [
            "id",
            "status",
            "client_id",
            "first_name",
            "last_name",
            "guardian_first_name",
            "guardian_last_name",
            "location",
            "last_sent_at",
            "resend_permitted",
        ],
    )


@invitations_app.command("resend")
def invitations_resend(
    invitation_id: int, actor: ActorOpt = None, as_json: JsonOpt = False
) -> None:
    """Queue an invitation again; refused (with the reason) for Opted-Out, Connected and New."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.lifecycle import resend

    _ensure_schema()

    def run() -> str:
        with get_engine().begin() as conn:
            return resend(conn, invitation_id, _actor(actor))

    key = _run(as_json, run)
    if as_json:
        _emit_json({"invitation_id": invitation_id, "queued": key})
    else:
        err.print(
            f"invitation {invitation_id} queued again ({key}); send it with `openslots outbox send`"
        )


def _lifecycle_command(
    as_json: bool, action: Callable[[Any], Any], done: str, payload: dict[str, Any]
) -> None:
    from openslots.connectors.database import get_engine

    _ensure_schema()

    def run() -> Any:
        with get_engine().begin() as conn:
            return action(conn)

    result = _run(as_json, run)
    if as_json:
        _emit_json(payload | {"result": result})
    else:
        err.print(done)


@invitations_app.command("request")
def invitations_request(
    invitation_id: int, actor: ActorOpt = None, as_json: JsonOpt = False
) -> None:
    """Send a provider-initiated request to a Registered client's app (status Invited)."""
    from openslots.connectors.database.lifecycle import request_connection

    _lifecycle_command(
        as_json,
        lambda c: request_connection(c, invitation_id, _actor(actor)),
        f"invitation {invitation_id}: request sent to the app (Invited)",
        {"invitation_id": invitation_id, "status": "Invited"},
    )


@invitations_app.command("accept")
def invitations_accept(invitation_id: int, as_json: JsonOpt = False) -> None:
    """Record the client's acceptance of a request (what the app's backend reports): the
    connection is approved and the invitation becomes Connected."""
    from openslots.connectors.database.lifecycle import accept_request

    _lifecycle_command(
        as_json,
        lambda c: accept_request(c, invitation_id),
        f"invitation {invitation_id}: accepted, connection approved (Connected)",
        {"invitation_id": invitation_id, "status": "Connected"},
    )


@registrations_app.command("import")
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

    _ensure_schema()
    counts = _run(as_json, lambda: registrations_import(str(path.resolve())))
    if as_json:
        _emit_json(counts)
        return
    err.print(
        f"{counts['registrations']} registrations: {counts['dob_matches']} approved by "
        f"Date of Birth Match, {counts['registered']} registered, "
        f"{counts['pending_requests']} pending requests, {counts['rejected']} rejected"
    )
    _print_findings("rejected", counts["rejections"])


@connections_app.command("list")
def connections_list(
    provider: ProviderOpt,
    location: LocationOpt = None,
    status: Annotated[
        str | None, typer.Option(help="Pending, Approved, Paused or Declined.")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="A priority label.")] = None,
    search: Annotated[str | None, typer.Option(help="Name, email or MRN.")] = None,
    sort: SortOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Connections with status, priority, Client ID/MRN and whether they receive Alerts."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.listings import list_connections

    _ensure_schema()
    provider_id, location_id = _run(as_json, lambda: _ids(provider, location))

    def query() -> list[dict[str, Any]]:
        with get_engine().connect() as conn:
            return list_connections(
                conn,
                provider_id,
                location_id=location_id,
                status=status,
                priority=priority,
                search=search,
                sort=sort,
            )

    rows = _run(as_json, query)
    if as_json:
        _emit_json(rows)
        return
    _table(
        rows,
        [
            "id",
            "status",
            "priority",
            "first_name",
            "last_name",
            "client_id",
            "location",
            "receives_alerts",
        ],
    )


class StatusChoice(StrEnum):
    approved = "approved"
    pending = "pending"
    paused = "paused"
    declined = "declined"


@connections_app.command("set-status")
def connections_set_status(
    connection_id: int,
    status: StatusChoice,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve, pause, decline or set a connection back to pending (audited)."""
    from openslots.connectors.database.lifecycle import set_connection_status
    from openslots.domain.statuses import ConnectionStatus

    new = ConnectionStatus(status.value.capitalize())
    _lifecycle_command(
        as_json,
        lambda c: str(set_connection_status(c, connection_id, new, _actor(actor), reason)),
        f"connection {connection_id}: {new}",
        {"connection_id": connection_id, "status": new},
    )


@connections_app.command("set-priority")
def connections_set_priority(
    connection_id: int, label: str, actor: ActorOpt = None, as_json: JsonOpt = False
) -> None:
    """Set the practice's priority label (it never changes who is alerted)."""
    from openslots.connectors.database.lifecycle import set_priority
    from openslots.settings import get_settings

    labels = get_settings().priority_labels
    _lifecycle_command(
        as_json,
        lambda c: set_priority(c, connection_id, label, labels, _actor(actor)),
        f"connection {connection_id}: priority {label}",
        {"connection_id": connection_id, "priority": label},
    )


@connections_app.command("set-mrn")
def connections_set_mrn(
    connection_id: int,
    mrn: str,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the Client ID / MRN (integrated providers alert only connections with one)."""
    from openslots.connectors.database.lifecycle import set_mrn

    _lifecycle_command(
        as_json,
        lambda c: set_mrn(c, connection_id, mrn, _actor(actor), reason),
        f"connection {connection_id}: MRN set",
        {"connection_id": connection_id},
    )


@app.command("audit")
def audit_command(
    connection: Annotated[int | None, typer.Option(help="Connection id.")] = None,
    invitation: Annotated[int | None, typer.Option(help="Invitation id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every recorded change of a connection or invitation: who, when, from, to, why."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.listings import audit_events

    if (connection is None) == (invitation is None):
        raise _fail("give exactly one of --connection or --invitation", as_json, code=2)
    _ensure_schema()
    entity, entity_id = ("connection", connection) if connection else ("invitation", invitation)
    with get_engine().connect() as conn:
        events = audit_events(conn, entity, int(entity_id or 0))
    if as_json:
        _emit_json(events)
        return
    _table(events, ["at", "actor", "action", "from", "to", "reason"])


def _opt(
    opt_in: bool,
    provider: str,
    email: str | None,
    phone: str | None,
    reason: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    from openslots.connectors.database import get_engine
    from openslots.connectors.database import lifecycle as life
    from openslots.connectors.database.models import Channel
    from openslots.domain.phone import to_e164
    from openslots.settings import get_settings

    if (email is None) == (phone is None):
        raise _fail("give exactly one of --email or --phone", as_json, code=2)
    _ensure_schema()
    if email is not None:
        channel, address = Channel.EMAIL, email.strip().lower()
    else:
        channel = Channel.SMS
        address = to_e164(phone or "", get_settings().phone_region) or ""
        if not address:
            raise _fail("--phone is not a valid mobile number", as_json, code=2)

    def run() -> int:
        with get_engine().begin() as conn:
            provider_id = life.provider_id_for(conn, provider)
            action = life.opt_in if opt_in else life.opt_out
            return action(conn, provider_id, channel, address, _actor(actor), reason)

    changed = _run(as_json, run)
    word = "opted in" if opt_in else "opted out"
    if as_json:
        _emit_json(
            {
                "provider": provider,
                "channel": str(channel),
                "action": word,
                "invitations_changed": changed,
            }
        )
    else:
        err.print(f"{word} of {provider}'s messages ({channel}); {changed} invitation(s) changed")


@app.command("opt-out")
def opt_out_command(
    provider: ProviderOpt,
    email: Annotated[str | None, typer.Option(help="The email that opts out.")] = None,
    phone: Annotated[str | None, typer.Option(help="The mobile phone that opts out.")] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Never contact this email or phone for this provider again, on any channel."""
    _opt(False, provider, email, phone, reason, actor, as_json)


@app.command("opt-in")
def opt_in_command(
    provider: ProviderOpt,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reverse an opt-out (audited); invitations return to their earlier status."""
    _opt(True, provider, email, phone, reason, actor, as_json)


# --- HL7 ----------------------------------------------------------------------------------


def _print_hl7(counts: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit_json(counts)
        return
    table = Table(show_header=False, box=None)
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    err.print(table)
    if counts.get("errors"):
        err.print("see `openslots hl7 errors`; after a fix, `openslots hl7 reprocess --all`")


@hl7_app.command("import")
def hl7_import_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories of messages (one or many per file, MLLP-framed or not)."
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Store every message, then apply them: ADT patients (same rules as the roster, email
    optional), A40 merges, SIU cancellations/bookings as open/filled slots."""
    from openslots.flows.hl7_ingest import hl7_import

    _ensure_schema()
    counts = _run(as_json, lambda: hl7_import([str(p.resolve()) for p in paths]))
    _print_hl7(counts, as_json)


@hl7_app.command("listen")
def hl7_listen(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 2575,
    ingest: Annotated[
        bool, typer.Option(help="Apply stored messages in batches (the hl7-ingest flow).")
    ] = True,
) -> None:
    """Accept MLLP-framed messages; each is stored before its ACK (AA/AE/AR) goes back."""
    import asyncio

    from openslots.connectors.hl7.mllp import MllpListener
    from openslots.settings import get_settings

    _ensure_schema()

    def run_ingest() -> object:
        from openslots.flows.hl7_ingest import hl7_ingest

        return hl7_ingest()

    listener = MllpListener(get_settings(), host, port, run_ingest if ingest else None)

    async def main() -> None:
        task = asyncio.create_task(listener.serve())
        await listener.ready.wait()
        err.print(f"listening for MLLP on {host}:{listener.port} (Ctrl-C to stop)")
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        stats = listener.stats
        err.print(f"stopped: {stats.received:,} messages, acks {stats.acked}")


@hl7_app.command("errors")
def hl7_errors(as_json: JsonOpt = False) -> None:
    """Stored messages that failed, with the segment, field and rule (the error queue)."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.hl7_store import errors

    _ensure_schema()
    with get_engine().connect() as conn:
        rows = errors(conn)
    if as_json:
        _emit_json(rows)
        return
    _table(rows, ["id", "message_type", "control_id", "sending_facility", "error"])


@hl7_app.command("reprocess")
def hl7_reprocess(
    message_ids: Annotated[list[int] | None, typer.Argument(help="Message ids.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every failed message.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue failed messages again (after a fix) and apply them."""
    from openslots.connectors.database import get_engine
    from openslots.connectors.database.hl7_store import requeue
    from openslots.flows.hl7_ingest import hl7_ingest

    if bool(message_ids) == all_:
        raise _fail("give message ids or --all", as_json, code=2)
    _ensure_schema()
    with get_engine().begin() as conn:
        queued = requeue(conn, None if all_ else message_ids)
    counts = _run(as_json, hl7_ingest)
    _print_hl7({"requeued": queued} | counts, as_json)


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
