"""HL7 acknowledgements (MSA/ERR) and the receive-time check that decides AA, AE or AR."""

from __future__ import annotations

import datetime as dt
import itertools
import re

from openslots.connectors.hl7.errors import Hl7ContentError, Hl7Error, Hl7ParseError
from openslots.connectors.hl7.parser import Message, choose_mrn, identifiers

DEMOGRAPHIC_EVENTS = {"A01", "A04", "A05", "A08", "A28", "A31"}
SCHEDULE_EVENTS = {"S12", "S13", "S15", "S17", "S26"}
_ack_ids = itertools.count(1)


def precheck(message: Message, authority: str | None = None) -> None:
    """Raise Hl7ContentError when a message we apply lacks what applying needs (AE)."""
    header = message.header
    if not header.control_id:
        raise Hl7ContentError("message control id is empty", "MSH-10")
    if header.message_type == "ADT" and (
        header.trigger_event in DEMOGRAPHIC_EVENTS or header.trigger_event == "A40"
    ):
        pid = message.first("PID")
        if pid is None:
            raise Hl7ContentError("PID segment is required", "PID")
        if not choose_mrn(identifiers(message, message.field(pid, 3)), authority):
            raise Hl7ContentError(
                "no patient identifier of type MR (or of the configured assigning authority)",
                "PID-3",
            )
        if header.trigger_event == "A40" and message.first("MRG") is None:
            raise Hl7ContentError("MRG segment is required for a merge", "MRG")
    scheduled = header.message_type == "SIU" and header.trigger_event in SCHEDULE_EVENTS - {"S26"}
    if scheduled and message.first("SCH") is None:
        raise Hl7ContentError("SCH segment is required", "SCH")


def ack(message: Message | None, code: str, error: Hl7Error | None = None) -> bytes:
    """An ACK for `message` (or for an unreadable message) with MSA and, on error, ERR.

    ERR-2 names the segment and field, ERR-3 the HL7 table 0357 code, ERR-8 the rule; the
    text never quotes the message's values.
    """
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
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
    if error is not None:
        segments.append(
            f"ERR||{_location(error.location)}|{error.code}^^HL70357|E||||{_safe(str(error))}"
        )
    return ("\r".join(segments) + "\r").encode("utf-8")


def _location(location: str | None) -> str:
    """ "PID-5.1" as an ERL: segment ^ sequence ^ field ^ repetition ^ component."""
    match = re.fullmatch(r"([A-Z0-9]{3})(?:-(\d+)(?:\.(\d+))?)?", location or "")
    if not match:
        return ""
    segment, field, component = match.groups()
    parts = [segment, "1", field or "", "1" if component else "", component or ""]
    return "^".join(parts).rstrip("^")


def _safe(text: str) -> str:
    """Escape the standard separators so a value cannot break the ACK's structure."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def classify(message: Message | None, error: Exception | None) -> str:
    """AA, AE or AR for what happened to a message on receipt."""
    if isinstance(error, Hl7ParseError) or (message is None and error is not None):
        return "AR"
    if error is not None:
        return "AE"
    return "AA"
