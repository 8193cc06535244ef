"""`openslots sms inbound`: a text a patient sent us (STOP, START...), as a webhook reports it."""

from __future__ import annotations

from typing import Annotated

import typer

from openslots.cli.options import JsonOpt
from openslots.cli.output import emit_json, err, run

app = typer.Typer(help="Texts we receive.", no_args_is_help=True)

_SAID = {
    "opted_out": "opted out of texts from {providers} provider(s)",
    "opted_in": "opted back in to texts from {providers} provider(s)",
    "ignored": "not an opt-out or opt-in keyword: nothing changed",
}


@app.command("inbound")
def sms_inbound(
    from_number: Annotated[str, typer.Option("--from", help="The sender's number.")],
    to_number: Annotated[
        str,
        typer.Option(
            "--to",
            help="Our number it was sent to (OPENSLOTS_TWILIO_FROM), or the messaging service "
            "SID (OPENSLOTS_TWILIO_MESSAGING_SERVICE_SID) when Twilio picks the number.",
        ),
    ],
    body: Annotated[str, typer.Option(help="The text as received.")],
    as_json: JsonOpt = False,
) -> None:
    """STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT opt the sender out of every provider that
    texts from that number; START or UNSTOP opt it back in; anything else is ignored."""
    from openslots.api import sms_inbound as inbound

    result = run(as_json, lambda: inbound(from_number, to_number, body))
    if as_json:
        emit_json(result)
    else:
        said = _SAID[result["action"]].format(**result)
        err.print(f"{said}; {result['invitations_changed']} invitation(s) changed")
