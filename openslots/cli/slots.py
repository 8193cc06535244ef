"""`openslots slots`: open a slot (its offers are queued before the command returns), claim,
close, explain why each connection was or was not alerted, and list slots."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from openslots.cli.options import ActorOpt, JsonOpt, SlotIdArg, actor_or_user
from openslots.cli.output import FAILED, emit_json, err, run, table

app = typer.Typer(help="Open Slots: offer freed appointments; the first claim wins.")


class Mode(StrEnum):
    BLAST = "blast"
    SERIAL = "serial"


class Status(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    CLOSED = "closed"


@app.command("open")
def slots_open(
    provider: Annotated[str, typer.Option(help="Provider name.")],
    location: Annotated[str, typer.Option(help="Location name.")],
    start: Annotated[
        str,
        typer.Option(help="2026-12-03T09:30 (the location's wall time) or with an offset."),
    ],
    minutes: Annotated[int, typer.Option(min=1, help="Length of the appointment.")],
    visit_type: Annotated[
        str | None, typer.Option(help="The visit type shown to patients (nothing else is).")
    ] = None,
    mode: Annotated[
        Mode,
        typer.Option(
            help="blast: everyone at once; serial: one group per timeout.", case_sensitive=False
        ),
    ] = Mode.BLAST,
    group_size: Annotated[int, typer.Option(min=1, help="Serial: connections per group.")] = 1,
    timeout_minutes: Annotated[
        int, typer.Option(min=0, help="Serial: minutes before the next group is offered.")
    ] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Open a slot and queue its offers (sent by `openslots outbox send`)."""
    from openslots.api import open_slot

    result = run(
        as_json,
        lambda: open_slot(
            provider,
            location,
            start,
            minutes,
            visit_type=visit_type,
            mode=str(mode),
            group_size=group_size,
            timeout_minutes=timeout_minutes,
        ),
    )
    if as_json:
        emit_json(result)
    elif result["status"] == "closed":
        err.print(f"slot {result['slot_id']}: starts within the lead time; offered to no one")
    else:
        err.print(
            f"slot {result['slot_id']} ({result['mode']}): {result['eligible']} eligible, "
            f"{result['alerts_queued']} offered now"
        )


@app.command("claim")
def slots_claim(
    token: Annotated[str, typer.Argument(help="The token of a claim link.")],
    as_json: JsonOpt = False,
) -> None:
    """Claim a slot with a claim link's token; exit 0 only when it is yours."""
    from openslots.api import claim_slot

    result = run(as_json, lambda: claim_slot(token))
    if as_json:
        emit_json(result)
    elif result["result"] == "won":
        err.print(f"slot {result['slot_id']}: it's yours")
    else:
        err.print(f"this appointment is no longer available ({result['result']})")
    if result["result"] != "won":
        raise typer.Exit(FAILED)


@app.command("decline")
def slots_decline(
    token: Annotated[str, typer.Argument(help="The token of a claim link.")],
    as_json: JsonOpt = False,
) -> None:
    """Say "Not for me" with a claim link's token: final for that patient and slot (a Serial
    slot offers its next group at once); exit 0 when it is recorded."""
    from openslots.api import decline_offer

    result = run(as_json, lambda: decline_offer(token))
    if as_json:
        emit_json(result)
    elif result["result"] == "declined":
        err.print(f"slot {result['slot_id']}: declined; it will not be offered to you again")
    elif result["result"] == "won":
        err.print(f"slot {result['slot_id']}: this claim won; the practice cancels bookings")
    else:
        err.print(f"cannot decline with this link ({result['result']})")
    if result["result"] != "declined":
        raise typer.Exit(FAILED)


@app.command("close")
def slots_close(slot_id: SlotIdArg, as_json: JsonOpt = False) -> None:
    """Close an open slot; offers not yet sent are withdrawn."""
    from openslots.api import close_slot

    result = run(as_json, lambda: close_slot(slot_id))
    if as_json:
        emit_json(result)
    elif result["closed"]:
        err.print(f"slot {slot_id}: closed")
    else:
        err.print(f"slot {slot_id}: already {result['status']}")


@app.command("explain")
def slots_explain(slot_id: SlotIdArg, as_json: JsonOpt = False) -> None:
    """Why each connection of the slot's provider was or was not alerted."""
    from openslots.api import explain_slot

    rows = run(as_json, lambda: explain_slot(slot_id))
    if as_json:
        emit_json(rows)
        return
    table(rows, ["connection_id", "client_id", "outcome", "reason"])


@app.command("list")
def slots_list(
    status: Annotated[
        Status | None, typer.Option(help="open, claimed or closed.", case_sensitive=False)
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Provider name.")] = None,
    unreconciled: Annotated[
        bool,
        typer.Option(
            "--unreconciled",
            help="Only claimed slots not reconciled into the EHR's calendar "
            "OPENSLOTS_RECONCILE_AFTER_HOURS (default 4) after the claim.",
        ),
    ] = False,
    conflicts: Annotated[
        bool,
        typer.Option(
            "--conflicts",
            help="Only claimed slots an SIU^S12 for another patient was booked over in the EHR.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Slots with offers sent, viewed and declined, claims tried, the winner (a connection
    id), `no_one_left` when every offer of an open slot was declined, and whether the claim
    reached the EHR's calendar."""
    from openslots.api import list_slots

    rows = run(
        as_json,
        lambda: list_slots(
            None if status is None else str(status),
            provider,
            unreconciled=unreconciled,
            conflicts=conflicts,
        ),
    )
    if as_json:
        emit_json(rows)
        return
    table(
        rows,
        [
            "id",
            "starts_at",
            "status",
            "closed_reason",
            "mode",
            "offers_sent",
            "claims_tried",
            "viewed",
            "declined",
            "no_one_left",
            "winner_connection_id",
            "reconciled_by",
            "conflict_at",
        ],
    )


@app.command("reconcile")
def slots_reconcile(
    slot_id: Annotated[int, typer.Argument(help="The claimed slot's id.")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that the claimed slot was put into the EHR's calendar (audited: `audit --slot`)."""
    from openslots.api import reconcile_slot

    result = run(as_json, lambda: reconcile_slot(slot_id, actor_or_user(actor)))
    if as_json:
        emit_json(result)
    elif result["changed"]:
        err.print(f"slot {slot_id}: reconciled by {result['reconciled_by']}")
    else:
        err.print(
            f"slot {slot_id}: already reconciled by {result['reconciled_by']} "
            f"at {result['reconciled_at']}"
        )
