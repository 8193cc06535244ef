"""The HL7 message store: every message is written (and committed) before it is acknowledged.

A redelivery (same sender, control id and content) is recognised and not stored again; the
same control id with different content (senders do reuse ids) is stored and flagged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, func, insert, select, update

from openslots.connectors.database._dialect import skip_locked
from openslots.connectors.database.models import Hl7Message, Hl7MessageStatus
from openslots.connectors.hl7.ack import classify, precheck
from openslots.connectors.hl7.errors import Hl7Error, Hl7ParseError
from openslots.connectors.hl7.parser import Message, parse


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Stored:
    """The outcome of storing one message, and what to acknowledge."""

    message_id: int
    ack_code: str  # AA | AE | AR
    duplicate: bool
    message: Message | None
    error: Hl7Error | None
    control_id_reused: bool = False  # stored beside a different message with its control id


def store_messages(
    conn: Connection, raws: Sequence[bytes], source: str, authority: str | None = None
) -> list[Stored]:
    """Store a batch of raw messages in one transaction (the caller commits)."""
    prepared = []
    for raw in raws:
        message: Message | None = None
        error: Hl7Error | None = None
        try:
            message = parse(raw)
            precheck(message, authority)
        except Hl7Error as exc:
            error = exc
        except Exception:
            error = Hl7ParseError("the message cannot be read as HL7")
        header = message.header if message is not None else None
        identity = (
            (
                header.sending_application[:180],
                header.sending_facility[:180],
                header.control_id[:199],
            )
            if header
            else ("", "", "")
        )
        prepared.append((raw, message, error, identity, hashlib.sha256(raw).hexdigest()))

    control_ids = sorted({p[3][2] for p in prepared if p[3][2]})
    known: dict[tuple[str, str, str], dict[str, int]] = {}
    for start in range(0, len(control_ids), 1000):
        rows = conn.execute(
            select(
                Hl7Message.sending_application,
                Hl7Message.sending_facility,
                Hl7Message.control_id,
                Hl7Message.content_hash,
                Hl7Message.id,
            ).where(Hl7Message.control_id.in_(control_ids[start : start + 1000]))
        )
        for app, facility, control, digest, message_id in rows:
            known.setdefault((app, facility, control), {})[digest] = message_id

    # Decide every message first (a redelivery inside the batch is a duplicate too), then
    # insert the new ones in one multi-row INSERT ... RETURNING.
    decided: list[tuple[int | None, bool, Message | None, Hl7Error | None, str, int]] = []
    new_rows: list[dict[str, object]] = []
    pending: dict[tuple[str, str, str, str], int] = {}
    pending_identities: set[tuple[str, str, str]] = set()
    for raw, message, error, identity, digest in prepared:
        code = classify(message, error)
        seen = known.get(identity, {}) if identity[2] else {}
        if digest in seen:
            decided.append((seen[digest], True, message, error, code, -1))
            continue
        key = (*identity, digest)
        if identity[2] and key in pending:
            decided.append((None, True, message, error, code, pending[key]))
            continue
        header = message.header if message is not None else None
        reused = bool(identity[2]) and (bool(seen) or identity in pending_identities)
        new_rows.append(
            {
                "sending_application": identity[0],
                "sending_facility": identity[1],
                "control_id": identity[2],
                "message_type": header.kind[:20] if header else "",
                "content_hash": digest,
                "raw": raw,
                "source": source,
                "status": Hl7MessageStatus.ERROR if error else Hl7MessageStatus.STORED,
                "error": str(error) if error else None,
                "control_id_reused": reused,
                "received_at": _now(),
            }
        )
        if identity[2]:
            pending[key] = len(new_rows) - 1
            pending_identities.add(identity)
        decided.append((None, False, message, error, code, len(new_rows) - 1))
    ids: list[int] = []
    if new_rows:
        ids = list(
            conn.execute(
                insert(Hl7Message).returning(Hl7Message.id, sort_by_parameter_order=True), new_rows
            ).scalars()
        )
    return [
        Stored(
            message_id if message_id is not None else ids[row],
            code,
            duplicate,
            message,
            error,
            bool(not duplicate and new_rows[row]["control_id_reused"]),
        )
        for message_id, duplicate, message, error, code, row in decided
    ]


def claim_stored(conn: Connection, limit: int) -> list[tuple[int, bytes]]:
    query = (
        select(Hl7Message.id, Hl7Message.raw)
        .where(Hl7Message.status == Hl7MessageStatus.STORED)
        .order_by(Hl7Message.id)
        .limit(limit)
    )
    return [(int(i), bytes(r)) for i, r in conn.execute(skip_locked(conn, query))]


def mark(conn: Connection, outcomes: Sequence[tuple[int, Hl7MessageStatus, str | None]]) -> None:
    """Set (status, PHI-free error) per message id: one statement per status for the many
    messages without an error, one row at a time only for errors."""
    now = _now()
    plain: dict[Hl7MessageStatus, list[int]] = {}
    for message_id, status, error in outcomes:
        if error is None:
            plain.setdefault(status, []).append(message_id)
    for status, ids in plain.items():
        for start in range(0, len(ids), 10_000):
            conn.execute(
                update(Hl7Message)
                .where(Hl7Message.id.in_(ids[start : start + 10_000]))
                .values(status=status, error=None, processed_at=now)
            )
    failed = [{"mid": i, "st": s, "err": e, "at": now} for i, s, e in outcomes if e is not None]
    if failed:
        conn.execute(
            update(Hl7Message)
            .where(Hl7Message.id == bindparam("mid"))
            .values(status=bindparam("st"), error=bindparam("err"), processed_at=bindparam("at")),
            failed,
        )


def errors(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        select(
            Hl7Message.id,
            Hl7Message.message_type,
            Hl7Message.control_id,
            Hl7Message.sending_facility,
            Hl7Message.error,
            Hl7Message.received_at,
        )
        .where(Hl7Message.status == Hl7MessageStatus.ERROR)
        .order_by(Hl7Message.id)
    )
    return [dict(r._mapping) for r in rows]


def requeue(conn: Connection, ids: Sequence[int] | None) -> int:
    """Put failed messages back in the queue (all of them, and any left mid-apply by a crash,
    when `ids` is None)."""
    failed = [Hl7MessageStatus.ERROR]
    if ids is None:
        failed.append(Hl7MessageStatus.APPLYING)
    query = update(Hl7Message).where(Hl7Message.status.in_(failed))
    if ids is not None:
        query = query.where(Hl7Message.id.in_(list(ids)))
    return int(conn.execute(query.values(status=Hl7MessageStatus.STORED, error=None)).rowcount or 0)


def counts_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(Hl7Message.status, func.count()).group_by(Hl7Message.status))
    return {status: int(n) for status, n in rows}
