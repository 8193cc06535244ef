"""The HL7 message store: every message is written (and committed) before it is acknowledged.

A redelivery (same sender, control id and content) is recognised and not stored again; the
same control id with different content (senders do reuse ids) is stored and flagged. What a
message is (its identity, type, and whether it is applicable) is decided by the receiver in
tasks/; this module only stores what it is given.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    any_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute

from openslots.connectors.database._dialect import skip_locked
from openslots.connectors.database.models import (
    IDENTITY_COLUMNS,
    IDENTITY_STORED,
    Hl7Message,
    Hl7MessageStatus,
)
from openslots.domain import clock

Identity = tuple[str, str, str]  # (sending application, sending facility, control id)
# From this many new messages on, PostgreSQL gets them by COPY (ids reserved first); fewer (an
# MLLP group) go in one INSERT ... RETURNING, which is one round trip instead of two.
COPY_FROM = 64
# Columns COPY writes, in order; the rest keep their defaults (NULL).
COPY_COLUMNS = (
    "id",
    "sending_application",
    "sending_facility",
    "control_id",
    "message_type",
    "content_hash",
    "raw",
    "source",
    "status",
    "error",
    "control_id_reused",
    "received_at",
)
# The most messages store_group takes in one statement (a listener hands over at most 500).
MAX_GROUP = 1_000
# SQLite takes at most 32,766 bound parameters a statement; PostgreSQL gets one array.
ID_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class Incoming:
    """One received message as the receiver decided it; `error` (PHI-free) means not applicable."""

    raw: bytes
    identity: Identity
    content_hash: str
    message_type: str
    error: str | None


@dataclass(frozen=True, slots=True)
class Saved:
    """Where a message went: its row, whether it was a redelivery, whether its id was reused."""

    message_id: int
    duplicate: bool
    control_id_reused: bool = False  # stored beside a different message with its control id


def _fit(identity: Identity) -> Identity:
    """The identity cut to its column widths (what is stored is what is compared)."""
    app, facility, control = identity
    return app[:180], facility[:180], control[:199]


def store_messages(conn: Connection, messages: Sequence[Incoming], source: str) -> list[Saved]:
    """Store a batch of received messages in one transaction (the caller commits)."""
    identities = [_fit(m.identity) for m in messages]
    control_ids = sorted({identity[2] for identity in identities if identity[2]})
    known: dict[Identity, dict[str, int]] = {}
    for app, facility, control, digest, message_id in _stored(conn, control_ids):
        known.setdefault((app, facility, control), {})[digest] = message_id

    # Decide every message first (a redelivery inside the batch is a duplicate too), then
    # insert the new ones in one multi-row INSERT ... RETURNING.
    decided: list[tuple[int | None, bool, int]] = []  # (known id, duplicate, new row index)
    new_rows: list[dict[str, object]] = []
    pending: dict[tuple[str, str, str, str], int] = {}
    pending_identities: set[Identity] = set()
    received_at = clock.now()
    for message, identity in zip(messages, identities, strict=True):
        digest = message.content_hash
        seen = known.get(identity, {}) if identity[2] else {}
        if digest in seen:
            decided.append((seen[digest], True, -1))
            continue
        key = (*identity, digest)
        if identity[2] and key in pending:
            decided.append((None, True, pending[key]))
            continue
        reused = bool(identity[2]) and (bool(seen) or identity in pending_identities)
        new_rows.append(
            {
                "sending_application": identity[0],
                "sending_facility": identity[1],
                "control_id": identity[2],
                "message_type": message.message_type[:20],
                "content_hash": digest,
                "raw": message.raw,
                "source": source,
                "status": (
                    Hl7MessageStatus.STORED if message.error is None else Hl7MessageStatus.ERROR
                ),
                "error": message.error,
                "control_id_reused": reused,
                "received_at": received_at,
            }
        )
        if identity[2]:
            pending[key] = len(new_rows) - 1
            pending_identities.add(identity)
        decided.append((None, False, len(new_rows) - 1))
    inserted = _insert(conn, new_rows)
    # A row another writer stored since the lookup (the unique identity refused ours) is a
    # redelivery of the row that writer stored.
    lost = {n for n, message_id in enumerate(inserted) if message_id is None}
    ids = _with_lost(conn, inserted, lambda n: _key(new_rows[n]))
    return [
        Saved(
            message_id if message_id is not None else ids[row],
            duplicate or row in lost,
            bool(not duplicate and row not in lost and new_rows[row]["control_id_reused"]),
        )
        for message_id, duplicate, row in decided
    ]


Key = tuple[str, str, str, str]  # (application, facility, control id, content hash)


def _key(row: dict[str, object]) -> Key:
    return (
        str(row["sending_application"]),
        str(row["sending_facility"]),
        str(row["control_id"]),
        str(row["content_hash"]),
    )


def _with_lost(conn: Connection, ids: Sequence[int | None], key: Callable[[int], Key]) -> list[int]:
    """`ids` with each None (a row another writer stored meanwhile: the unique identity refused
    ours) replaced by the id of that writer's row, committed by now; `key(n)`: row n's key."""
    lost = [n for n, message_id in enumerate(ids) if message_id is None]
    found = _stored_ids(conn, [key(n) for n in lost]) if lost else {}
    return [found[key(n)] if message_id is None else message_id for n, message_id in enumerate(ids)]


def _stored(conn: Connection, control_ids: Sequence[str]) -> Iterator[Any]:
    """(application, facility, control id, content hash, id) of every stored message with one
    of these (non-empty) control ids."""
    for among in _among(conn, Hl7Message.control_id, control_ids, 1000):
        yield from conn.execute(
            select(
                Hl7Message.sending_application,
                Hl7Message.sending_facility,
                Hl7Message.control_id,
                Hl7Message.content_hash,
                Hl7Message.id,
            ).where(among, text(IDENTITY_STORED))  # the unique identity index's condition
        )


def _stored_ids(conn: Connection, keys: Sequence[Key]) -> dict[Key, int]:
    """The stored rows' ids of these identities (app, facility, control id, content hash)."""
    rows = _stored(conn, sorted({key[2] for key in keys}))
    return {(app, facility, control, digest): i for app, facility, control, digest, i in rows}


def store_group(conn: Connection, messages: Sequence[Incoming], source: str) -> list[Saved]:
    """Store a group of messages durably before returning (an MLLP listener's group commit).

    On PostgreSQL the whole group is ONE statement in autocommit (GROUP_STATEMENT: look up
    redeliveries, decide, insert, answer), atomic and durable when it returns: one round trip
    per group, and the same text every time, so psycopg prepares it once. It decides as
    `store_messages` does (tests/connectors/test_hl7_store_group.py checks both alike).
    Elsewhere (SQLite: no round trips) it is `store_messages` in one transaction.
    """
    if conn.dialect.name != "postgresql":
        with conn.begin():
            return store_messages(conn, messages, source)
    if len(messages) > MAX_GROUP:
        raise ValueError(f"a group holds at most {MAX_GROUP} messages")
    if not messages:
        return []
    raw = conn.connection.driver_connection
    if raw is None or not raw.autocommit:
        conn.execution_options(isolation_level="AUTOCOMMIT")  # once per connection
        raw = conn.connection.driver_connection
    if raw is None or not raw.autocommit:  # the statement would not commit: no ACK may follow
        raise RuntimeError("a group must be stored on a connection in autocommit")
    # The group goes as one JSON document (json.dumps and the server parse it in C; psycopg
    # would quote every element of eight text arrays in Python, ~60 % of the store's CPU).
    group = json.dumps(
        [
            (
                *_fit(m.identity),
                m.content_hash,
                m.message_type[:20],
                m.raw.hex(),
                (Hl7MessageStatus.STORED if m.error is None else Hl7MessageStatus.ERROR).value,
                m.error,
            )
            for m in messages
        ]
    )
    with raw.cursor() as cursor:
        cursor.execute(GROUP_STATEMENT, (group, source, clock.now()))
        rows = cursor.fetchall()
    # A message another writer stored during the statement (its insert met the unique identity
    # and did nothing) is a redelivery of that row (the statement answers it as a duplicate).
    ids = _with_lost(
        conn,
        [row[0] for row in rows],
        lambda n: (*_fit(messages[n].identity), messages[n].content_hash),
    )
    return [
        Saved(int(message_id), duplicate, reused)
        for message_id, (_, duplicate, reused) in zip(ids, rows, strict=True)
    ]


# store_messages as one PostgreSQL statement, for a group (a JSON array, one row per message
# with its raw bytes in hex, numbered by `pos`). A message is a redelivery when a stored row,
# or an earlier message of the group, has its identity and content hash (never for an empty
# control id); a new one's control id counts as reused when a stored row or an earlier message
# has its identity. The new rows take their ids from the sequence in the group's order
# (volatile functions in a SELECT list run after its ORDER BY); one that meets a row another
# writer stored meanwhile (the unique identity) is not inserted and is answered with a NULL id
# (store_group looks it up). Every other message is answered with its row's id.
GROUP_STATEMENT = """
WITH m AS (
    SELECT r->>0 AS app, r->>1 AS facility, r->>2 AS control, r->>3 AS digest, r->>4 AS kind,
        decode(r->>5, 'hex') AS raw, r->>6 AS status, r->>7 AS error, pos
    FROM json_array_elements(%s::json) WITH ORDINALITY AS g(r, pos)
), decided AS (
    SELECT m.pos, known.id AS known_id,
        m.control <> '' AND (known.found OR m.pos > min(m.pos) OVER same_identity) AS reused,
        CASE WHEN m.control = '' THEN m.pos
            ELSE min(m.pos) OVER (PARTITION BY m.app, m.facility, m.control, m.digest)
        END AS first_pos
    FROM m CROSS JOIN LATERAL (
        SELECT min(h.id) FILTER (WHERE h.content_hash = m.digest) AS id, count(*) > 0 AS found
        FROM hl7_messages h
        WHERE m.control <> '' AND h.control_id <> '' AND h.control_id = m.control
            AND h.sending_application = m.app AND h.sending_facility = m.facility
    ) known
    WINDOW same_identity AS (PARTITION BY m.app, m.facility, m.control)
), fresh AS (
    SELECT pos, reused, nextval(pg_get_serial_sequence('hl7_messages', 'id')) AS id
    FROM decided WHERE known_id IS NULL AND first_pos = pos
    ORDER BY pos
), written AS (
    INSERT INTO hl7_messages (
        id, sending_application, sending_facility, control_id, message_type, content_hash,
        raw, source, status, error, control_id_reused, received_at
    )
    SELECT fresh.id, app, facility, control, kind, digest, raw, %s, status, error, reused, %s
    FROM fresh JOIN m USING (pos)
    ON CONFLICT (control_id, sending_application, sending_facility, content_hash)
        WHERE control_id <> '' DO NOTHING
    RETURNING id
)
SELECT coalesce(d.known_id, written.id),
    d.known_id IS NOT NULL OR d.first_pos <> d.pos OR written.id IS NULL,
    d.reused AND d.known_id IS NULL AND d.first_pos = d.pos AND written.id IS NOT NULL
FROM decided d LEFT JOIN fresh ON fresh.pos = d.first_pos
    LEFT JOIN written ON written.id = fresh.id
ORDER BY d.pos
"""


def _insert(conn: Connection, rows: list[dict[str, object]]) -> list[int | None]:
    """Insert rows; their ids, in the rows' order (ascending: ingest applies by id), None for
    a row whose identity another writer stored since the lookup (the unique index refused it).

    All at once (COPY or one INSERT) in a savepoint; when that meets a row another writer
    stored in the meantime (rare: two writers, one message, one moment), again one row at a
    time with ON CONFLICT DO NOTHING."""
    if not rows:
        return []
    try:
        with conn.begin_nested():
            return list(_insert_all(conn, rows))
    except IntegrityError as exc:
        if "uq_hl7_messages_identity" not in str(exc.orig) and "hl7_messages.control_id" not in (
            str(exc.orig)
        ):
            raise
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(Hl7Message)
        .on_conflict_do_nothing(
            index_elements=list(IDENTITY_COLUMNS), index_where=text(IDENTITY_STORED)
        )
        .returning(Hl7Message.id)
    )
    return [conn.execute(statement, row).scalar_one_or_none() for row in rows]


def _insert_all(conn: Connection, rows: list[dict[str, object]]) -> list[int]:
    if conn.dialect.name != "postgresql" or len(rows) < COPY_FROM:
        return list(
            conn.execute(
                insert(Hl7Message).returning(Hl7Message.id, sort_by_parameter_order=True), rows
            ).scalars()
        )
    # COPY returns no ids: take them from the column's sequence first (what the INSERT's
    # default would have done), then write every row, ids included, in one COPY.
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('hl7_messages', 'id')) "
            "FROM generate_series(1, %s)",
            (len(rows),),
        )
        ids = sorted(int(i) for (i,) in cursor.fetchall())
        with cursor.copy(f"COPY hl7_messages ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for message_id, row in zip(ids, rows, strict=True):
                copy.write_row((message_id, *(row[c] for c in COPY_COLUMNS[1:])))
    return ids


def _among(
    conn: Connection,
    column: InstrumentedAttribute[Any],
    values: Sequence[Any],
    chunk: int = ID_CHUNK,
) -> Iterator[ColumnElement[bool]]:
    """`column IN values` as few conditions: one array parameter on PostgreSQL (`= ANY`), so
    the statement is the same whatever the count; chunks of bound parameters on SQLite."""
    if not values:
        return
    if conn.dialect.name == "postgresql":
        item = BigInteger() if isinstance(values[0], int) else column.type
        yield column == any_(bindparam(None, list(values), type_=ARRAY(item)))
        return
    for start in range(0, len(values), chunk):
        yield column.in_(values[start : start + chunk])


def claim_stored_digests(
    conn: Connection, limit: int, now: dt.datetime, lease: dt.timedelta
) -> list[tuple[int, str]]:
    """Claim up to `limit` messages to apply, oldest first, and mark them `applying` until
    `now + lease`: stored ones, and those a run left `applying` whose lease expired (the run
    was killed; a lease of NULL comes from before leases and counts as expired). Answers each
    message's id and content hash, not its raw bytes: an ingest that read most of them on
    receipt (a file drop) needs the bytes of the others only (`stored_raws`), and ~700 bytes a
    message fetched and copied for nothing were ~1/3 of the claim's time."""
    expired = and_(
        Hl7Message.status == Hl7MessageStatus.APPLYING,
        or_(Hl7Message.lease_expires_at.is_(None), Hl7Message.lease_expires_at < now),
    )
    claimable = (
        select(Hl7Message.id)
        .where(or_(Hl7Message.status == Hl7MessageStatus.STORED, expired))
        .order_by(Hl7Message.id)
        .limit(limit)
    )
    # One statement claims and marks: the rows it picks (locked, others' locked rows skipped
    # on PostgreSQL) are the rows it updates and returns. On PostgreSQL the ids go in as one
    # array (`= ANY(ARRAY(...))`): `IN (subquery)` was planned as a hash semi join over a
    # sequential scan of the whole table, every message ever stored (at 100,000 rows ~130 of
    # the claim's ~730 ms; more as the table grows), where the array is an index lookup.
    picked = skip_locked(conn, claimable)
    chosen = (
        Hl7Message.id == any_(func.array(picked.scalar_subquery()))
        if conn.dialect.name == "postgresql"
        else Hl7Message.id.in_(picked)
    )
    claim = (
        update(Hl7Message)
        .where(chosen)
        .values(status=Hl7MessageStatus.APPLYING, error=None, lease_expires_at=now + lease)
        .returning(Hl7Message.id, Hl7Message.content_hash)
    )
    return sorted((int(i), str(digest)) for i, digest in conn.execute(claim))


def stored_raws(conn: Connection, ids: Sequence[int]) -> dict[int, bytes]:
    """The raw bytes of these messages, by id."""
    found: dict[int, bytes] = {}
    for among in _among(conn, Hl7Message.id, sorted(ids)):
        rows = conn.execute(select(Hl7Message.id, Hl7Message.raw).where(among))
        found |= {int(i): bytes(r) for i, r in rows}
    return found


def mark(conn: Connection, outcomes: Sequence[tuple[int, Hl7MessageStatus, str | None]]) -> None:
    """Set (status, PHI-free error) per message id: one statement per status for the many
    messages without an error, one row at a time only for errors."""
    now = clock.now()
    plain: dict[Hl7MessageStatus, list[int]] = {}
    for message_id, status, error in outcomes:
        if error is None:
            plain.setdefault(status, []).append(message_id)
    for status, ids in plain.items():
        for among in _among(conn, Hl7Message.id, ids):
            conn.execute(
                update(Hl7Message)
                .where(among)
                .values(status=status, error=None, processed_at=now, lease_expires_at=None)
            )
    failed = [{"mid": i, "st": s, "err": e, "at": now} for i, s, e in outcomes if e is not None]
    if failed:
        conn.execute(
            update(Hl7Message)
            .where(Hl7Message.id == bindparam("mid"))
            .values(
                status=bindparam("st"),
                error=bindparam("err"),
                processed_at=bindparam("at"),
                lease_expires_at=None,
            ),
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
    stored = query.values(status=Hl7MessageStatus.STORED, error=None, lease_expires_at=None)
    return int(conn.execute(stored).rowcount or 0)


def counts_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(Hl7Message.status, func.count()).group_by(Hl7Message.status))
    return {status: int(n) for status, n in rows}
