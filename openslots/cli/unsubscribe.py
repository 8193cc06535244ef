"""`openslots unsubscribe TOKEN`: what the unsubscribe link in a message does, from a shell."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, run


def unsubscribe_command(
    token: Annotated[str, typer.Argument(help="The token at the end of the unsubscribe link.")],
    as_json: JsonOpt = False,
) -> None:
    """Opt out the contact a message was sent to, for its provider (audited as `unsubscribe`).

    Idempotent; the address is never printed. A malformed, tampered or expired token exits 1
    with the reason.
    """
    from openslots.api import unsubscribe

    result = run(as_json, lambda: unsubscribe(token))
    if as_json:
        emit_json(result)
    elif result["action"] == "already_opted_out":
        err.print(f"already unsubscribed from {result['provider']}'s messages; nothing changed")
    else:
        err.print(
            f"unsubscribed from {result['provider']}'s messages ({result['channel']} link); "
            f"{result['invitations_changed']} invitation(s) now Opted-Out"
        )
