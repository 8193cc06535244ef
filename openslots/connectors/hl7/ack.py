"""HL7 acknowledgements (MSH/MSA/ERR) for an ACK code the receiver decided (AA, AE or AR), with
ERR segments of severity E for the error and W for each warning of an applied message."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Sequence

from openslots.connectors.hl7.errors import Hl7Error
from openslots.connectors.hl7.parser import Message
from openslots.domain import clock

_ack_ids = itertools.count(1)


def ack(
    message: Message | None,
    code: str,
    error: Hl7Error | None = None,
    warnings: Sequence[Hl7Error] = (),
    at: dt.datetime | None = None,
) -> bytes:
    """An ACK for `message` (or for an unreadable message) with MSA and an ERR per finding.

    ERR-2 names the segment and field, ERR-3 the HL7 table 0357 code, ERR-4 the severity (E
    for the error, W for a warning), ERR-5 the rule, ERR-8 the text; the text never quotes
    the message's values. `at` (default: the clock's now) is the ACK's time: a listener
    answering a group reads the clock once for all of its ACKs.
    """
    now = (clock.now() if at is None else at).strftime("%Y%m%d%H%M%S")
    if message is not None:
        h = message.header
        sender, facility, trigger, control, version = (
            h.sending_application,
            h.sending_facility,
            h.trigger_event,
            h.control_id,
            h.version or "2.5.1",
        )
    else:
        sender = facility = trigger = control = ""
        version = "2.5.1"
    segments = [
        f"MSH|^~\\&|OPENSLOTS|OPENSLOTS|{_safe(sender)}|{_safe(facility)}|{now}||"
        f"ACK^{_safe(trigger)}^ACK|OS{now}{next(_ack_ids):06d}|P|{_safe(version)}",
        f"MSA|{code}|{_safe(control)}" + (f"|{_safe(str(error))}" if error else ""),
    ]
    findings = [(error, "E")] if error is not None else []
    findings += [(warning, "W") for warning in warnings]
    segments += [
        f"ERR||{_location(finding.location)}|{finding.code}^^HL70357|{severity}|"
        f"{_safe(finding.rule or '')}|||{_safe(str(finding))}"
        for finding, severity in findings
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _location(location: str | None) -> str:
    """ "PID-5.1" as an ERL: segment ^ sequence ^ field ^ repetition ^ component."""
    match = re.fullmatch(r"([A-Z0-9]{3})(?:-(\d+)(?:\.(\d+))?)?", location or "")
    if not match:
        return ""
    segment, field, component = match.groups()
    parts = [segment, "1", field or "", "1" if component else "", component or ""]
    return "^".join(parts).rstrip("^")


# Every control character (MLLP's 0x0B start and 0x1C end blocks among them) becomes a space:
# one echoed into an ACK would break the sender's framing.
_CONTROLS = {code: " " for code in [*range(0x20), 0x7F]}
# Text with none of the characters `_safe` changes (most values: ids, names, versions).
_UNCHANGED = re.compile(r"[^\\|^&~\x00-\x1f\x7f]*")


def _safe(text: str) -> str:
    r"""Escape the standard separators and blank control characters, so that a value cannot
    break the ACK's structure or its MLLP frame.

    >>> _safe("A\x0bB|C\x1c")
    'A B\\F\\C '
    """
    if _UNCHANGED.fullmatch(text):
        return text
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .translate(_CONTROLS)
    )
