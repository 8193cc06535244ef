"""Roster fingerprints in the database: load a location's settled rows before a file is read,
find the settled rows a batch's other rows re-open, settle what a completed import applied, and
drop the fingerprints of clients that change (domain/fingerprints.py says why each exists).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Table,
    TextClause,
    bindparam,
    delete,
    select,
    text,
)

from openslots.connectors.database._dialect import aware, upsert
from openslots.connectors.database.models import (
    ImportBatch,
    RosterFingerprint,
    RosterVerification,
    StagingState,
)
from openslots.connectors.database.providers import location_id_named, provider_id_named
from openslots.connectors.database.roster import estimated_rows, refresh_statistics
from openslots.domain import fingerprints as rules

ANALYZE_AFTER = 1_000  # rows settled by one import
ANALYZE_SHARE = 0.1  # ... and at least this share of the table (a 1% re-sync need not)


def _sql(query: str, params: dict[str, Any]) -> TextClause:
    """`text(query)` with its dates and timestamps typed, so SQLite stores and compares them
    as it stores the columns (naive UTC text), not as the driver's default adapter writes them."""
    typed = [
        bindparam(name, type_=DateTime(timezone=True) if isinstance(value, dt.datetime) else Date())
        for name, value in params.items()
        if isinstance(value, dt.date) and f":{name}" in query
    ]
    return text(query).bindparams(*typed)


def _run(conn: Connection, query: str, params: dict[str, Any], **options: Any) -> Any:
    return conn.execute(_sql(query, params), params, execution_options=options or None)


def location_ids(conn: Connection, provider: str, location: str) -> tuple[int, int] | None:
    provider_id = provider_id_named(conn, provider)
    if provider_id is None:
        return None
    location_id = location_id_named(conn, provider_id, location)
    return None if location_id is None else (provider_id, location_id)


def settled_hashes(
    conn: Connection, provider_id: int, location_id: int, mode: str, today: dt.date
) -> np.ndarray:
    """The fingerprints of the location's settled rows that may be trusted today: recent
    enough, and not re-opened by a connection changed since the last import verified them."""
    changed = _connections_changed_since(conn, provider_id, location_id, mode)
    if changed is None:
        return np.empty(0, np.int64)
    params = {
        "p": provider_id,
        "l": location_id,
        "since": rules.settled_since(today),
        "changed": changed,
    }
    hashes = _int64_column(
        conn,
        "SELECT row_hash FROM roster_fingerprints "
        "WHERE provider_id = :p AND location_id = :l AND settled_on >= :since",
        params,
    )
    if not len(hashes) or not _any_connection_changed(conn, params):
        return hashes
    reopened = _int64_column(
        conn,
        "SELECT f.row_hash FROM roster_fingerprints f JOIN clients c ON c.id = f.client_id "
        f"WHERE f.provider_id = :p AND f.location_id = :l AND ({_CLAIMED_BY_CHANGED})",
        params,
    )
    return np.setdiff1d(hashes, reopened, assume_unique=True)


# A changed connection matches by MRN, by email + date of birth or by name + date of birth:
# every settled client (`c`) born that day or holding that MRN is re-opened.
_CLAIMED_BY_CHANGED = (
    "c.date_of_birth IN (SELECT date_of_birth FROM connections "
    " WHERE provider_id = :p AND updated_at > :changed)"
    " OR c.client_ref IN (SELECT mrn FROM connections "
    " WHERE provider_id = :p AND updated_at > :changed AND mrn IS NOT NULL)"
)


def _connections_changed_since(
    conn: Connection, provider_id: int, location_id: int, mode: str
) -> dt.datetime | None:
    """Connections updated after this may change a settled row's outcome: the location's last
    verification less the margin (None: never verified, nothing is trusted)."""
    verified_at = conn.execute(
        select(RosterVerification.verified_at).where(
            RosterVerification.provider_id == provider_id,
            RosterVerification.location_id == location_id,
            RosterVerification.mode == mode,
        )
    ).scalar_one_or_none()
    return None if verified_at is None else aware(verified_at) - rules.VERIFY_MARGIN


def _any_connection_changed(conn: Connection, params: dict[str, Any]) -> bool:
    return (
        _run(
            conn,
            "SELECT 1 FROM connections WHERE provider_id = :p AND updated_at > :changed LIMIT 1",
            params,
        ).first()
        is not None
    )


def _int64_column(conn: Connection, query: str, params: dict[str, Any]) -> np.ndarray:
    """One BIGINT column (named `row_hash`) as a numpy array. PostgreSQL sends it as one
    bytea of 8-byte big-endian values: a million rows as a million result rows, or a COPY
    (libpq hands COPY data over one row at a time), cost ~0.8 s in Python; this ~0.1 s."""
    if conn.dialect.name != "postgresql":
        rows = _run(conn, query, params).scalars().all()
        return np.fromiter(rows, dtype=np.int64, count=len(rows))
    packed = _run(
        conn,
        f"SELECT string_agg(int8send(row_hash), ''::bytea) FROM ({query}) AS hashes",
        params,
    ).scalar_one()
    if packed is None:
        return np.empty(0, np.int64)
    return np.frombuffer(packed, dtype=">i8").astype(np.int64)


def reopened_by_batch(
    conn: Connection, batch_id: int, provider_id: int, location_id: int
) -> np.ndarray:
    """Fingerprints of the location's settled clients that a staged row of the batch shares a
    Client ID or an email + date of birth with (an in-file duplicate must see both rows), or a
    connection with (two rows matching one connection are both held for review): every
    settled client born on the day of, or holding the MRN of, a connection that a staged row
    could match (same birth date, or Client ID = MRN)."""
    params = {"b": batch_id, "p": provider_id, "l": location_id}
    shared = _int64_column(
        conn,
        # CROSS JOIN: SQLite reads the staged rows first (few) and looks each key up.
        "SELECT f.row_hash FROM roster_staging s CROSS JOIN clients c "
        "CROSS JOIN roster_fingerprints f "
        "WHERE s.batch_id = :b AND c.provider_id = :p AND c.client_ref = s.client_ref "
        " AND f.client_id = c.id AND f.provider_id = :p AND f.location_id = :l "
        "UNION "
        "SELECT f.row_hash FROM roster_staging s CROSS JOIN clients c "
        "CROSS JOIN roster_fingerprints f "
        "WHERE s.batch_id = :b AND s.email IS NOT NULL AND c.provider_id = :p "
        " AND c.email = s.email AND c.date_of_birth = s.date_of_birth "
        " AND f.client_id = c.id AND f.provider_id = :p AND f.location_id = :l",
        params,
    )
    if _run(conn, "SELECT 1 FROM connections WHERE provider_id = :p LIMIT 1", params).first():
        near = (
            "FROM connections k WHERE k.provider_id = :p AND ("
            " k.date_of_birth IN (SELECT date_of_birth FROM roster_staging WHERE batch_id = :b)"
            " OR k.mrn IN (SELECT client_ref FROM roster_staging WHERE batch_id = :b))"
        )
        claimed = _int64_column(
            conn,
            "SELECT f.row_hash FROM roster_fingerprints f JOIN clients c ON c.id = f.client_id "
            "WHERE f.provider_id = :p AND f.location_id = :l AND ("
            f" c.date_of_birth IN (SELECT k.date_of_birth {near})"
            f" OR c.client_ref IN (SELECT k.mrn {near} AND k.mrn IS NOT NULL))",
            params,
        )
        shared = np.union1d(shared, claimed)
    return shared


def forget_read_rows(conn: Connection, batch_id: int, provider_id: int, location_id: int) -> None:
    """The location's fingerprints of rows this batch read in full (re-opened, or all of them
    when skipping is off) go: the apply settles each again only if it still qualifies, so a row
    now rejected, held for review or uninvited is read again next time."""
    _run(
        conn,
        "DELETE FROM roster_fingerprints WHERE provider_id = :p AND location_id = :l "
        "AND row_hash IN (SELECT row_hash FROM roster_staging "
        " WHERE batch_id = :b AND row_hash IS NOT NULL)",
        {"b": batch_id, "p": provider_id, "l": location_id},
    )


def forget_changed_clients(conn: Connection, batch_id: int, provider_id: int) -> None:
    """Clients this batch inserted or changed lose every fingerprint (any location): the rows
    settled for them describe other values."""
    _run(
        conn,
        # The staged clients first, behind a fence: asked for "clients whose last batch is
        # this one", PostgreSQL's statistics (taken before this batch) promise none, and it
        # scanned all 1M clients of a re-sync changing 10,000 (0.3-0.45 s) instead of
        # looking the staged rows' clients up.
        "WITH staged AS MATERIALIZED ("
        " SELECT c.id, c.last_batch_id FROM roster_staging s JOIN clients c"
        "  ON c.provider_id = :p AND c.client_ref = s.client_ref WHERE s.batch_id = :b) "
        "DELETE FROM roster_fingerprints WHERE client_id IN ("
        " SELECT id FROM staged WHERE last_batch_id = :b)",
        {"b": batch_id, "p": provider_id},
    )


def forget_client(conn: Connection, client_id: int) -> None:
    """A client changed outside an import (a merge): its settled rows are read again."""
    conn.execute(delete(RosterFingerprint).where(RosterFingerprint.client_id == client_id))


def settle(
    conn: Connection,
    batch_id: int,
    provider_id: int,
    location_id: int,
    mode: str,
    today: dt.date,
    oldest_dob: dt.date,
) -> int:
    """Settle the batch's staged rows that need nothing more (domain/fingerprints.py), replacing
    the location's fingerprints of their clients, and record that the location's settled rows
    were verified against the connections as of the batch's start. Returns the rows settled."""
    params = {
        "b": batch_id,
        "p": provider_id,
        "l": location_id,
        "today": today,
        "floor": rules.dob_floor(oldest_dob),
        "ok": StagingState.OK.value,
        "connected": StagingState.CONNECTED.value,
    }
    changed = _connections_changed_since(conn, provider_id, location_id, mode)
    if changed is not None and _any_connection_changed(conn, {**params, "changed": changed}):
        # The rows the changed connections re-opened (settled_hashes) that the file did not
        # hold stay settled but were not checked against those connections: were they kept,
        # the verification below would vouch for them, and a row of a later file meeting one
        # of those connections with another row would be skipped, missing its review.
        _run(
            conn,
            "DELETE FROM roster_fingerprints WHERE provider_id = :p AND location_id = :l "
            "AND client_id IN (SELECT c.id FROM clients c WHERE c.provider_id = :p AND ("
            f"{_CLAIMED_BY_CHANGED}))",
            {**params, "changed": changed},
        )
    _run(
        conn,
        # forget_read_rows already took the fingerprints equal to a staged row's: what is
        # left for a staged client describes an earlier version of its row.
        "DELETE FROM roster_fingerprints WHERE provider_id = :p AND location_id = :l "
        "AND client_id IN (SELECT c.id FROM roster_staging s JOIN clients c"
        " ON c.provider_id = :p AND c.client_ref = s.client_ref WHERE s.batch_id = :b)",
        params,
    )
    settled = _run(
        conn,
        (
            "INSERT INTO roster_fingerprints "
            "(provider_id, location_id, row_hash, client_id, settled_on) "
            "SELECT :p, :l, s.row_hash, c.id, :today FROM roster_staging s "
            "JOIN clients c ON c.provider_id = :p AND c.client_ref = s.client_ref "
            # A join, not an EXISTS inside the OR below: PostgreSQL hashed that subquery over
            # every invitation of the location, 100k of them for a re-sync settling 1,000 rows.
            "LEFT JOIN invitations i ON i.client_id = c.id AND i.location_id = :l "
            # Twins: clients sharing email + birth date, among the staged rows' keys only. (A
            # NOT EXISTS on clients itself was estimated to keep ~1 row, every client matching
            # itself, and planned into nested loops: 1.2 s of a 100k-row first import.) An
            # anti-join, not a NOT IN: PostgreSQL applied the NOT IN as a filter on a scan of
            # every client, then hash-joined 1M clients to settle a re-sync's 10,000 rows.
            "LEFT JOIN ("
            # CROSS JOIN: SQLite then reads the staged rows first and looks each key up
            # (planned the other way round, it read every staged row per client).
            " SELECT twin.email, twin.date_of_birth FROM roster_staging s2 CROSS JOIN clients twin"
            " WHERE s2.batch_id = :b AND twin.provider_id = :p AND twin.email = s2.email"
            "  AND twin.date_of_birth = s2.date_of_birth GROUP BY twin.email, twin.date_of_birth"
            " HAVING COUNT(DISTINCT twin.id) > 1"
            ") twins ON twins.email = c.email AND twins.date_of_birth = c.date_of_birth "
            "WHERE s.batch_id = :b AND s.row_hash IS NOT NULL "
            "AND s.state IN (:ok, :connected) AND c.date_of_birth > :floor "
            "AND NOT EXISTS (SELECT 1 FROM import_rejections r "
            " WHERE r.batch_id = :b AND r.line = s.line) "
            "AND (s.state = :connected OR (c.email IS NULL AND c.mobile_phone IS NULL) "
            " OR i.client_id IS NOT NULL) "
            "AND twins.email IS NULL "
            # In key order: a million random keys inserted as they come touch a random page
            # of the primary key each (29 s of a 1M-row first import); sorted, they append.
            "ORDER BY s.row_hash ON CONFLICT DO NOTHING"
        ),
        params,
        preserve_rowcount=True,
    ).rowcount
    known = estimated_rows(conn, "roster_fingerprints")
    if settled >= ANALYZE_AFTER and settled >= ANALYZE_SHARE * known:
        # The deletes and re-opening joins of the next import plan from these statistics
        # (stale, they scanned every fingerprint of the location per staged row).
        refresh_statistics(conn, "roster_fingerprints")
    verified_at = conn.execute(
        select(ImportBatch.started_at).where(ImportBatch.id == batch_id)
    ).scalar_one()
    table = cast(Table, RosterVerification.__table__)
    statement = upsert(conn, table).values(
        provider_id=provider_id, location_id=location_id, mode=mode, verified_at=verified_at
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["provider_id", "location_id", "mode"],
            set_={"verified_at": statement.excluded.verified_at},
        )
    )
    return int(settled or 0)
