"""Options shared by several command groups, declared once so their help reads the same."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ProviderOpt = Annotated[str, typer.Option(help="Provider name.")]
LocationOpt = Annotated[str | None, typer.Option(help="Location name (default: all).")]
SortOpt = Annotated[str | None, typer.Option(help="COLUMN or COLUMN:desc.")]
ActorOpt = Annotated[str | None, typer.Option(help="Who makes the change (default: your user).")]
InvitationIdArg = Annotated[
    int, typer.Argument(help="Invitation id (`openslots invitations list` shows it).")
]
ConnectionIdArg = Annotated[
    int, typer.Argument(help="Connection id (`openslots connections list` shows it).")
]
SlotIdArg = Annotated[int, typer.Argument(help="Slot id (`openslots slots list` shows it).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why, for the audit log.")]


def actor_or_user(actor: str | None) -> str:
    """The --actor given, or the operating-system user running the command."""
    import getpass

    return actor or getpass.getuser()
