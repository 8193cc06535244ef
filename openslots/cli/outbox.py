"""`openslots outbox`: send what is due (the dispatch flow), count messages by status, and the
operator's commands for messages that need a decision (list, retry, resolve)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Column, Table

from openslots.cli.options import ActorOpt, JsonOpt, ReasonOpt, actor_or_user
from openslots.cli.output import USAGE, emit_json, err, fail, out, require_schema, run

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
    """Messages by state and channel (JSON: {"channel:state": n} for pairs that have any)."""
    from openslots.api import outbox_status as status_counts
    from openslots.connectors.database.models import Channel, OutboxStatus

    counts = run(as_json, status_counts)
    if as_json:
        emit_json(counts)
        return
    channels = [str(c) for c in Channel]
    grid = Table("state", *channels, "total")
    for state in OutboxStatus:  # in the order a message moves through them
        row = [counts.get(f"{channel}:{state}", 0) for channel in channels]
        if any(row):
            grid.add_row(str(state), *[f"{n:,}" for n in row], f"{sum(row):,}")
    out.print(grid)


# --- the operator's commands: what needs a decision, and the decisions ---------------------


class ListState(StrEnum):
    UNKNOWN = "unknown"
    DEAD = "dead"
    FAILED = "failed"


# The table a person reads (the key names kind, invitation and channel); --json has every field.
LIST_COLUMNS = {
    "id": "id",
    "idempotency_key": "key",
    "state": "state",
    "attempts": "attempts",
    "reason": "reason",
    "next_attempt_at": "next attempt",
}


@app.command("list")
def outbox_list(
    state: Annotated[
        ListState | None,
        typer.Option(help="Only this state (default: all three).", case_sensitive=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Messages that need you: unknown (resolve), dead (read why), failed (retried anyway).

    Ids, keys, attempts and reasons only: never a body, an address or a name.
    """
    from openslots.api import outbox_list as list_messages

    rows = run(as_json, lambda: list_messages([state.value] if state else None, limit))
    if as_json:
        emit_json(rows)
        return
    # Folded, not cut with an ellipsis: the reason is what the operator came for.
    grid = Table(*[Column(title, overflow="fold") for title in LIST_COLUMNS.values()])
    for row in rows:
        when = row["next_attempt_at"]
        row = row | {"next_attempt_at": when and f"{when:%Y-%m-%d %H:%M}"}
        grid.add_row(*["" if row[c] is None else str(row[c]) for c in LIST_COLUMNS])
    out.print(grid)


@app.command("retry")
def outbox_retry(
    message_id: Annotated[int | None, typer.Argument(help="Outbox message id.")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Every failed message (dead ones: by id).")
    ] = False,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a failed or dead message again now (attempts are kept; audited)."""
    from openslots import api

    if (message_id is None) == (not all_failed):
        raise fail("give exactly one of ID or --all-failed", as_json, code=USAGE)
    who = actor_or_user(actor)
    if all_failed:
        result = run(as_json, lambda: api.outbox_retry_all_failed(who, reason))
        message = f"{result['retried']:,} failed message(s) queued again"
    else:
        result = run(as_json, lambda: api.outbox_retry(int(message_id or 0), who, reason))
        message = f"outbox message {message_id}: {result['from']} -> {result['to']}"
    if as_json:
        emit_json(result)
    else:
        err.print(message)


@app.command("resolve")
def outbox_resolve(
    message_id: Annotated[int, typer.Argument(help="An `unknown` outbox message id.")],
    sent: Annotated[
        bool | None,
        typer.Option(
            "--sent/--not-sent",
            help="It reached the recipient (mark sent), or it did not (send it again).",
            show_default=False,
        ),
    ] = None,
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide an `unknown` message after checking the relay's or Twilio's logs (audited)."""
    from openslots.api import outbox_resolve as resolve

    if sent is None:
        raise fail("give --sent or --not-sent", as_json, code=USAGE)
    who = actor_or_user(actor)
    result = run(as_json, lambda: resolve(message_id, sent=sent, actor=who, reason=reason))
    if as_json:
        emit_json(result)
    else:
        err.print(f"outbox message {message_id}: {result['from']} -> {result['to']}")
