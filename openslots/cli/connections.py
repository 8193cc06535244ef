"""`openslots connections`: the seed's Connections screen and its status, priority and MRN."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from openslots.cli.options import (
    ActorOpt,
    ConnectionIdArg,
    JsonOpt,
    LocationOpt,
    ProviderOpt,
    ReasonOpt,
    SortOpt,
    actor_or_user,
)
from openslots.cli.output import changed, choice, done, emit_json, run, table

app = typer.Typer(help="The seed's Connections screen.", no_args_is_help=True)

COLUMNS = [
    "id",
    "status",
    "priority",
    "first_name",
    "last_name",
    "client_id",
    "location",
    "receives_alerts",
]


@app.command("list")
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
    from openslots.api import list_connections
    from openslots.domain.statuses import ConnectionStatus

    status = choice(status, ConnectionStatus, "status", as_json)
    rows = run(
        as_json,
        lambda: list_connections(
            provider, location, status=status, priority=priority, search=search, sort=sort
        ),
    )
    if as_json:
        emit_json(rows)
        return
    table(rows, COLUMNS)


class StatusChoice(StrEnum):
    approved = "approved"
    pending = "pending"
    paused = "paused"
    declined = "declined"


@app.command("set-status")
def connections_set_status(
    connection_id: ConnectionIdArg,
    status: Annotated[
        StatusChoice,
        typer.Argument(help="approved, pending, paused or declined.", case_sensitive=False),
    ],
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve, pause, decline or set a connection back to pending (audited)."""
    from openslots.api import set_connection_status
    from openslots.domain.statuses import ConnectionStatus

    new = ConnectionStatus(status.value.capitalize())
    previous = run(
        as_json,
        lambda: set_connection_status(connection_id, new, actor_or_user(actor), reason),
    )
    # `status` (kept) is the new one; `from`/`to` name both sides of the change.
    changed(
        as_json,
        f"connection {connection_id}: {new}",
        {"connection_id": connection_id, "status": new, "from": str(previous), "to": str(new)},
    )


@app.command("set-priority")
def connections_set_priority(
    connection_id: ConnectionIdArg,
    label: Annotated[str, typer.Argument(help="A priority label (OPENSLOTS_PRIORITY_LABELS).")],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the practice's priority label (it never changes who is alerted)."""
    from openslots.api import set_priority

    run(as_json, lambda: set_priority(connection_id, label, actor_or_user(actor)))
    done(
        as_json,
        None,
        f"connection {connection_id}: priority {label}",
        {"connection_id": connection_id, "priority": label},
    )


@app.command("set-mrn")
def connections_set_mrn(
    connection_id: ConnectionIdArg,
    mrn: Annotated[str, typer.Argument(help="The client's medical record number in the EHR.")],
    reason: ReasonOpt = None,
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the Client ID / MRN (integrated providers alert only connections with one)."""
    from openslots.api import set_mrn

    run(as_json, lambda: set_mrn(connection_id, mrn, actor_or_user(actor), reason))
    done(
        as_json,
        None,
        f"connection {connection_id}: MRN set",
        {"connection_id": connection_id},
    )


@app.command("set-availability")
def connections_set_availability(
    connection_id: Annotated[int, typer.Argument(help="The connection's id.")],
    windows: Annotated[
        str,
        typer.Argument(
            help="When the patient can come, in the location's time zone: \"Mon-Fri "
            '08:00-12:00; Sat 09:00-11:00" (days Mon..Sun, ranges or commas; HH:MM-HH:MM); '
            "`any` clears it. Only slots a window holds whole are offered."
        ),
    ],
    actor: ActorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a connection's availability windows (audited)."""
    from openslots.api import set_availability

    stored = run(as_json, lambda: set_availability(connection_id, windows, actor_or_user(actor)))
    done(
        as_json,
        None,
        f"connection {connection_id}: availability {stored or 'any'}",
        {"connection_id": connection_id, "availability": stored},
    )


@app.command("set-order")
def connections_set_order(
    connection_id: ConnectionIdArg,
    order: Annotated[int, typer.Argument(help="Place in the Serial order (lower first).")],
    as_json: JsonOpt = False,
) -> None:
    """Set the connection's place in the practice's Serial order (lower is offered first)."""
    from openslots.api import set_alert_order

    run(as_json, lambda: set_alert_order(connection_id, order))
    done(
        as_json,
        None,
        f"connection {connection_id}: alert order {order}",
        {"connection_id": connection_id, "alert_order": order},
    )
