"""`openslots roster`: the roster template, imports (the roster-sync flow) and their findings."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import (
    Interrupted,
    counts_table,
    emit_json,
    err,
    fail,
    interrupted,
    out,
    print_findings,
    require_schema,
    run,
    table,
)
from openslots.errors import OpenslotsError, RosterRejectedError

app = typer.Typer(help="Import roster CSV files (the seed's bulk template).", no_args_is_help=True)

IMPORT_COUNTS = [
    "total_rows",
    "accepted",
    "rejected",
    "new_clients",
    "updated_clients",
    "mrns_mapped",
    "needs_review",
    "queued_invitations",
]


class Mode(StrEnum):
    invite = "invite"
    sync = "sync"


@app.command("template")
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


@app.command("import")
def roster_import(
    path: Annotated[Path, typer.Argument(help="Roster CSV file.", exists=True, dir_okay=False)],
    provider: Annotated[str, typer.Option(help="Provider name (created on first use).")],
    location: Annotated[str, typer.Option(help="Location name (created on first use).")],
    mode: Annotated[
        Mode,
        typer.Option(
            help="invite: the seed's bulk upload, rows of clients already Approved are rejected. "
            "sync: nightly EHR roster, such rows refresh the client instead.",
            case_sensitive=False,
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
    from openslots.api import import_report
    from openslots.flows.roster_sync import roster_sync

    require_schema(as_json)
    stop_progress = _show_progress() if not as_json and err.is_terminal else None
    try:
        summary = roster_sync(
            str(path.resolve()), provider, location, mode.value, strict, integrated
        )
    except RosterRejectedError as rejected:
        failed_batch = rejected.batch_id
        _print_import(run(as_json, lambda: import_report(failed_batch)), as_json)
        raise typer.Exit(1) from None
    except OpenslotsError as exc:
        raise fail(str(exc), as_json) from None
    except Interrupted as exc:
        if stop_progress is not None:
            stop_progress()
            stop_progress = None
        raise _interrupted_import(exc, as_json) from None
    except Exception as exc:  # Prefect's API gone, a bug: what committed still counts
        batch_id = _batch_after_error(exc, as_json)
    else:
        batch_id = int(str(summary["batch_id"]))
    finally:
        if stop_progress is not None:
            stop_progress()
    _print_import(run(as_json, lambda: import_report(batch_id)), as_json)


def _batch_after_error(exc: Exception, as_json: bool) -> int:
    """The flow raised something not ours. A batch that completed is the import's answer (a
    failure to record in Prefect after the commit is a warning); otherwise the batch is ended
    as failed and the command fails naming the error's type (its text may quote a row)."""
    from openslots.api import end_imports_of_this_process

    reason = f"failed ({type(exc).__name__}); staged rows removed"
    ended = end_imports_of_this_process(interrupted=False, reason=reason)
    if ended and ended[-1][1] == "completed":
        err.print(
            f"[yellow]warning:[/yellow] batch {ended[-1][0]} committed, but Prefect could not "
            f"record the end of the run ({type(exc).__name__}); the counts below are the "
            "database's",
            highlight=False,
        )
        return ended[-1][0]
    what = f"batch {ended[-1][0]} {reason}" if ended else f"{reason}, no batch was started"
    raise fail(f"import failed: {what}", as_json) from None


def _interrupted_import(exc: Interrupted, as_json: bool) -> typer.Exit:
    """End what the import left running and say in one line what was kept (exit 130)."""
    from openslots.api import end_imports_of_this_process

    reason = f"interrupted ({exc.signal_name}); staged rows removed"
    ended = end_imports_of_this_process(interrupted=True, reason=reason)
    if not ended:
        what = "no import batch was started; nothing written"
    elif ended[-1][1] == "completed":
        what = f"batch {ended[-1][0]} had completed: its rows are kept"
    else:
        what = (
            f"batch {ended[-1][0]} marked {ended[-1][1]}: nothing applied, its staged rows "
            "removed (`openslots roster batches`)"
        )
    if as_json:
        emit_json({"error": "interrupted", "signal": exc.signal_name, "batches": ended})
    return interrupted(exc, what)


def _show_progress() -> Callable[[], None]:
    """A progress bar on the terminal fed by the validation step; returns its stop function."""
    from rich.progress import BarColumn, Progress, TextColumn

    from openslots.tasks import roster as roster_tasks

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

    def stop() -> None:
        progress.stop()
        roster_tasks.progress_listeners.remove(listener)

    return stop


def _print_import(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    failed = report["status"] == "failed"
    head = "[red]import failed (strict): nothing written[/red]" if failed else "import completed"
    out.print(f"{head} — batch {report['batch_id']} ({report['mode']})")
    table = counts_table(report, IMPORT_COUNTS)
    table.add_row("warnings", f"{len(report['warnings']):,}")
    out.print(table)
    print_findings("rejected rows", report["rejections"])
    print_findings("warnings (row accepted)", report["warnings"])
    print_findings("needs review (row accepted, MRN not mapped)", report["reviews"])


BATCH_COLUMNS = [
    "batch_id",
    "status",
    "mode",
    "provider",
    "total_rows",
    "accepted",
    "rejected",
    "started_at",
    "finished_at",
    "reason",
]


@app.command("batches")
def roster_batches(
    limit: Annotated[int, typer.Option(help="How many of the latest batches to list.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Import batches, newest first: status, counts, started/finished and why one failed.

    A running batch whose process died (killed, machine lost) is marked interrupted here, and
    its staged rows removed, as the next import would.
    """
    from openslots.api import import_batches

    rows = run(as_json, lambda: import_batches(limit))
    if as_json:
        emit_json(rows)
        return
    table(rows, BATCH_COLUMNS)


@app.command("rejections")
def roster_rejections(
    batch_id: Annotated[int, typer.Argument(help="Import batch id (printed by `roster import`).")],
    as_json: JsonOpt = False,
) -> None:
    """Every finding of an import batch: rejected rows, warnings and rows needing review."""
    from openslots.api import import_report

    report = run(as_json, lambda: import_report(batch_id))
    if as_json:
        keys = ("batch_id", "status", "reason", "rejections", "warnings", "reviews")
        emit_json({k: report[k] for k in keys})
        return
    if report["status"] != "completed":
        why = f": {report['reason']}" if report["reason"] else ""
        out.print(f"batch {batch_id} {report['status']}{why}", highlight=False)
    print_findings("rejected rows", report["rejections"], limit=sys.maxsize)
    print_findings("warnings (row accepted)", report["warnings"], limit=sys.maxsize)
    print_findings("needs review", report["reviews"], limit=sys.maxsize)
