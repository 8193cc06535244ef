"""Everything the CLI prints: one JSON document on stdout with --json, tables otherwise, and
errors as a red line on stderr (plus a JSON error object with --json).

Exit codes: 0 done; 1 the command failed (a project error: unknown provider, schema not
current, rejected file...); 2 the command line is wrong (Typer's own usage errors, and ours);
130 interrupted (Ctrl-C or SIGTERM), after one line on stderr saying what was kept.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from openslots.errors import OpenslotsError

T = TypeVar("T")


def _console(stderr: bool) -> Console:
    """A terminal's console, or, redirected to a file or pipe, one that never wraps or cuts at
    80 columns (rich's default width without a terminal)."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=100_000, soft_wrap=True)


err = _console(stderr=True)
out = _console(stderr=False)

FAILED = 1
USAGE = 2
INTERRUPTED = 130


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM reached the command (raised by the handler `trap_signals` installs).

    Not a KeyboardInterrupt: click turns that into "Aborted!" and exit 1. A BaseException, so
    that `except Exception` clean-ups (and Prefect) let it through to the command.
    """

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


def trap_signals() -> None:
    """SIGINT and SIGTERM raise Interrupted once in the main thread; later ones are ignored so
    that the clean-up the first one started can finish (SIGKILL still stops everything)."""

    def interrupt(signum: int, _frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


def interrupted(exc: Interrupted, what_happened: str) -> typer.Exit:
    """The one line on stderr after an interrupt, and exit code 130."""
    err.print(f"interrupted ({exc.signal_name}): {what_happened}", highlight=False)
    return typer.Exit(INTERRUPTED)


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout (dates and enums as strings)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, as_json: bool, code: int = FAILED, **extra: Any) -> typer.Exit:
    """Report an error (and exit `code`): JSON on stdout with --json, always a line on stderr."""
    if as_json:
        emit_json({"error": message, **extra})
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def choice(value: str | None, valid: Iterable[str], what: str, as_json: bool) -> str | None:
    """`value` matched against `valid` whatever its case, in the valid spelling; an unknown
    one is a usage error listing the valid ones (never an empty result).

    Enum arguments get the same from Typer with `case_sensitive=False`.
    """
    if value is None:
        return None
    options = list(valid)
    for option in options:
        if option.casefold() == value.casefold():
            return option
    raise fail(f"unknown {what} {value!r}: use one of {', '.join(options)}", as_json, code=USAGE)


def run(as_json: bool, fn: Callable[[], T]) -> T:
    """Run a step; project errors become a clear message and exit code 1, never a traceback."""
    try:
        return fn()
    except OpenslotsError as exc:
        raise fail(str(exc), as_json) from None


def require_schema(as_json: bool) -> None:
    """Exit 1 (telling the user to run `openslots db upgrade`) unless the schema is current.

    Commands that start a flow check first, so that the message comes before a flow run does.
    """
    from openslots.api import require_current_schema

    run(as_json, require_current_schema)
    temporary_server_hint()


SERVE_HINT = (
    "note: this command starts a temporary Prefect server (~5-10 s); run `openslots serve` in "
    "this directory (another terminal) and commands here use its server instead"
)


def temporary_server_hint() -> None:
    """Say once per OPENSLOTS_HOME, on stderr, how to avoid the temporary Prefect server a flow
    command is about to start (nothing when serve runs or PREFECT_API_URL names a server)."""
    import os
    from pathlib import Path

    if os.environ.get("PREFECT_API_URL"):
        return
    from openslots.settings import get_settings

    marker = get_settings().resolved_home() / ".serve-hint-shown"
    if marker.exists():
        return
    err.print(SERVE_HINT, soft_wrap=True)
    with contextlib.suppress(OSError):
        Path(marker).touch()


def done(as_json: bool, result: Any, message: str, payload: dict[str, Any]) -> None:
    """A change went through: `payload` plus its `result` as JSON, or `message` on stderr."""
    changed(as_json, message, payload | {"result": result})


def changed(as_json: bool, message: str, payload: dict[str, Any]) -> None:
    """A change went through: `payload` as JSON, or `message` on stderr."""
    if as_json:
        emit_json(payload)
    else:
        err.print(message)


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows as a table on stdout, in `columns` order; None prints as an empty cell."""
    grid = Table(*columns)
    for row in rows:
        grid.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    out.print(grid)


def counts_table(counts: dict[str, Any], keys: list[str] | None = None) -> Table:
    """Name/number pairs without a header (underscores shown as spaces)."""
    grid = Table(show_header=False, box=None)
    for key in keys if keys is not None else list(counts):
        grid.add_row(key.replace("_", " "), f"{counts[key]:,}")
    return grid


def print_findings(title: str, findings: list[dict[str, Any]], limit: int = 50) -> None:
    """Rejected rows, warnings or reviews (line, field, rule, message): results, on stdout."""
    if not findings:
        return
    grid = Table("line", "field", "rule", "message", title=title, title_justify="left")
    for f in findings[:limit]:
        grid.add_row(str(f["line"]), f["field"], f["rule"], f["message"])
    out.print(grid)
    if len(findings) > limit:
        out.print(
            f"... and {len(findings) - limit:,} more (`openslots roster rejections` lists them all)"
        )
