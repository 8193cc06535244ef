"""Receiving HL7: decide what each message is (AA, AE or AR), store it, then acknowledge it.

One `receive` serves both ways in (the MLLP listener and the file drop), so a message is
judged the same whichever way it came. `StoreThenAck` is the handler the MLLP transport is
given: it stores a group of messages in one transaction and only then builds their ACKs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from openslots.connectors.database.hl7_store import Incoming, store_messages
from openslots.connectors.hl7.ack import ack
from openslots.connectors.hl7.errors import Hl7ContentError, Hl7Error, Hl7ParseError
from openslots.connectors.hl7.mllp import Reply
from openslots.connectors.hl7.parser import Message, choose_mrn, identifiers, parse

DEMOGRAPHIC_EVENTS = {"A01", "A04", "A05", "A08", "A28", "A31"}
SCHEDULE_EVENTS = {"S12", "S13", "S15", "S17", "S26"}


class StorageUnavailable(Hl7Error):
    """The message could not be stored (the database refused or was unreachable): send again."""

    code = "207"


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


def classify(message: Message | None, error: Exception | None) -> str:
    """AA, AE or AR for what happened to a message on receipt."""
    if isinstance(error, Hl7ParseError) or (message is None and error is not None):
        return "AR"
    if error is not None:
        return "AE"
    return "AA"


@dataclass
class Stored:
    """The outcome of receiving one message, and what to acknowledge."""

    message_id: int
    ack_code: str  # AA | AE | AR
    duplicate: bool
    message: Message | None
    error: Hl7Error | None
    control_id_reused: bool = False  # stored beside a different message with its control id


def _judge(raw: bytes, authority: str | None) -> tuple[Message | None, Hl7Error | None]:
    """The message, and why it cannot be applied (Hl7ParseError: AR, Hl7ContentError: AE)."""
    message: Message | None = None
    try:
        message = parse(raw)
        precheck(message, authority)
    except Hl7Error as exc:
        return message, exc
    except Exception:
        return message, Hl7ParseError("the message cannot be read as HL7")
    return message, None


def receive(
    conn: Connection, raws: Sequence[bytes], source: str, authority: str | None = None
) -> list[Stored]:
    """Parse, check and store a batch of raw messages in one transaction (the caller commits)."""
    judged = [_judge(raw, authority) for raw in raws]
    incoming = []
    for raw, (message, error) in zip(raws, judged, strict=True):
        header = message.header if message is not None else None
        incoming.append(
            Incoming(
                raw=raw,
                identity=(
                    (header.sending_application, header.sending_facility, header.control_id)
                    if header is not None
                    else ("", "", "")
                ),
                content_hash=hashlib.sha256(raw).hexdigest(),
                message_type=header.kind if header is not None else "",
                error=str(error) if error is not None else None,
            )
        )
    saved = store_messages(conn, incoming, source)
    return [
        Stored(
            s.message_id,
            classify(message, error),
            s.duplicate,
            message,
            error,
            s.control_id_reused,
        )
        for s, (message, error) in zip(saved, judged, strict=True)
    ]


class StoreThenAck:
    """The MLLP listener's handler: store a group in one transaction, then ACK each message.

    `openslots hl7 listen` builds it from `resources()` and hands it to the transport:
    `MllpListener(StoreThenAck(res.engine, res.settings.hl7_assigning_authority), host, port)`.
    """

    def __init__(self, engine: Engine, authority: str | None = None, source: str = "mllp"):
        self.engine, self.authority, self.source = engine, authority, source

    def handle(self, raws: list[bytes]) -> list[Reply]:
        with self.engine.begin() as conn:
            stored = receive(conn, raws, self.source, self.authority)
        # Only after the commit: an AA promises the message is stored.
        return [
            Reply(
                ack(s.message, s.ack_code, s.error),
                s.ack_code,
                new=s.ack_code == "AA" and not s.duplicate,
            )
            for s in stored
        ]

    def refuse(self, raw: bytes) -> Reply:
        error = StorageUnavailable("the message was not stored; send it again")
        return Reply(ack(None, "AR", error), "AR")
