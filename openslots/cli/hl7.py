"""`openslots hl7`: import feed files, listen on MLLP, list and reprocess failed messages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import (
    USAGE,
    Interrupted,
    counts_table,
    emit_json,
    err,
    fail,
    interrupted,
    require_schema,
    run,
    table,
)

app = typer.Typer(
    help="HL7 v2 feeds (ADT patients, SIU schedules): files and MLLP.", no_args_is_help=True
)


def _print_counts(counts: dict[str, Any], as_json: bool) -> None:
    # stderr in both modes: a file the drop did not read is never passed over in silence.
    for skipped in counts.get("skipped_files", []):
        err.print(f"warning: skipped {skipped['path']}: {skipped['reason']}", soft_wrap=True)
    if as_json:
        emit_json(counts)
        return
    err.print(counts_table({k: v for k, v in counts.items() if not isinstance(v, list)}))
    for provider in counts.get("providers_not_integrated", []):
        err.print(
            f"note: provider {provider!r} is not EHR-integrated and a feed names it; left so "
            "(`openslots providers set-integrated NAME` to change it)",
            soft_wrap=True,
        )
    if counts.get("errors"):
        err.print("see `openslots hl7 errors`; after a fix, `openslots hl7 reprocess --all`")


@app.command("import")
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

    require_schema(as_json)
    counts = run(as_json, lambda: hl7_import([str(p.resolve()) for p in paths]))
    _print_counts(counts, as_json)


@app.command("listen")
def hl7_listen(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 2575,
    ingest: Annotated[
        bool, typer.Option(help="Apply stored messages in batches (the hl7-ingest flow).")
    ] = True,
) -> None:
    """Accept MLLP-framed messages; each is stored before its ACK (AA/AE/AR) goes back."""
    import asyncio
    import contextlib
    import signal

    from openslots.connectors.hl7.mllp import MllpListener
    from openslots.resources import resources
    from openslots.tasks.hl7_receive import StoreThenAck

    # No ACK may promise a message was stored in a database that cannot store it.
    require_schema(as_json=False)

    def run_ingest() -> object:
        from openslots.flows.hl7_ingest import hl7_ingest

        return hl7_ingest()

    res = resources()
    settings = res.settings
    listener = MllpListener(
        StoreThenAck(res.engine, settings.hl7_assigning_authority, region=settings.phone_region),
        host,
        port,
        on_batch=run_ingest if ingest else None,
        batch_size=settings.hl7_batch_size,
        batch_seconds=settings.hl7_batch_seconds,
    )

    stopped_by: list[int] = []

    async def main() -> None:
        # Ctrl-C and SIGTERM cancel the listener inside the loop, which then closes cleanly
        # (the process-wide handlers would raise between the loop and its worker threads).
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(listener.serve())

        def stop(sig: int) -> None:
            stopped_by.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        await listener.ready.wait()
        err.print(f"listening for MLLP on {host}:{listener.port} (Ctrl-C to stop)")
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, Interrupted):
        stopped_by.append(signal.SIGINT)
    stats = listener.stats
    summary = f"stopped: {stats.received:,} messages, acks {stats.acked}"
    raise interrupted(Interrupted(stopped_by[0]), summary) if stopped_by else typer.Exit(0)


@app.command("errors")
def hl7_errors(as_json: JsonOpt = False) -> None:
    """Stored messages that failed, with the segment, field and rule (the error queue)."""
    from openslots.api import hl7_errors as failed_messages

    rows = run(as_json, failed_messages)
    if as_json:
        emit_json(rows)
        return
    table(rows, ["id", "message_type", "control_id", "sending_facility", "error"])


@app.command("reprocess")
def hl7_reprocess(
    message_ids: Annotated[list[int] | None, typer.Argument(help="Message ids.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every failed message.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue failed messages again (after a fix) and apply them."""
    from openslots.api import requeue_hl7_messages
    from openslots.flows.hl7_ingest import hl7_ingest

    if bool(message_ids) == all_:
        raise fail("give message ids or --all", as_json, code=USAGE)
    queued = run(as_json, lambda: requeue_hl7_messages(None if all_ else message_ids))
    counts = run(as_json, hl7_ingest)
    _print_counts({"requeued": queued} | counts, as_json)
