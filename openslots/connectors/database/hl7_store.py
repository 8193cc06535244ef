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

from openslots.connectors.database.models import Hl7Message
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

    results: list[Stored] = []
    for raw, message, error, identity, digest in prepared:
        seen = known.get(identity, {}) if identity[2] else {}
        code = classify(message, error)
        if digest in seen:
            results.append(Stored(seen[digest], code, True, message, error))
            continue
        header = message.header if message is not None else None
        message_id = conn.execute(
            insert(Hl7Message)
            .values(
                sending_application=identity[0],
                sending_facility=identity[1],
                control_id=identity[2],
                message_type=header.kind[:20] if header else "",
                content_hash=digest,
                raw=raw,
                source=source,
                status="error" if error else "stored",
                error=str(error) if error else None,
                control_id_reused=bool(seen),
                received_at=_now(),
            )
            .returning(Hl7Message.id)
        ).scalar_one()
        if identity[2]:
            known.setdefault(identity, {})[digest] = message_id
        results.append(Stored(message_id, code, False, message, error))
    return results


def claim_stored(conn: Connection, limit: int) -> list[tuple[int, bytes]]:
    query = (
        select(Hl7Message.id, Hl7Message.raw)
        .where(Hl7Message.status == "stored")
        .order_by(Hl7Message.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [(int(i), bytes(r)) for i, r in conn.execute(query)]


def mark(conn: Connection, outcomes: Sequence[tuple[int, str, str | None]]) -> None:
    """Set (status, PHI-free error) per message id."""
    if outcomes:
        conn.execute(
            update(Hl7Message)
            .where(Hl7Message.id == bindparam("mid"))
            .values(status=bindparam("st"), error=bindparam("err"), processed_at=bindparam("at")),
            [{"mid": i, "st": s, "err": e, "at": _now()} for i, s, e in outcomes],
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
        .where(Hl7Message.status == "error")
        .order_by(Hl7Message.id)
    )
    return [dict(r._mapping) for r in rows]


def requeue(conn: Connection, ids: Sequence[int] | None) -> int:
    """Put failed messages back in the queue (all of them, and any left mid-apply by a crash,
    when `ids` is None)."""
    failed = ["error"] if ids is not None else ["error", "applying"]
    query = update(Hl7Message).where(Hl7Message.status.in_(failed))
    if ids is not None:
        query = query.where(Hl7Message.id.in_(list(ids)))
    return int(conn.execute(query.values(status="stored", error=None)).rowcount or 0)


def counts_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(Hl7Message.status, func.count()).group_by(Hl7Message.status))
    return {status: int(n) for status, n in rows}
