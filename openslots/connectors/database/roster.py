"""Set-based roster writes: stage validated chunks, then apply a whole file in a few statements.

Staging uses COPY on PostgreSQL and executemany on SQLite; applying is a handful of
INSERT ... SELECT / ON CONFLICT statements in one transaction, so invitations are queued in the
same transaction as the clients they invite. Nothing here loops over rows in Python except the
MRN candidates, whose number is bounded by the provider's connections.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

from openslots.connectors.database._dialect import upsert
from openslots.connectors.database.batches import this_worker
from openslots.connectors.database.eligibility import not_opted_out
from openslots.connectors.database.models import (
    BatchStatus,
    Client,
    FindingSeverity,
    ImportBatch,
    ImportMode,
    ImportRejection,
    Invitation,
    Provider,
    RosterMatch,
    RosterStaging,
    StagingState,
)

# Re-exported: tasks and benchmarks reach these through this module.
from openslots.connectors.database.providers import Target as Target
from openslots.connectors.database.providers import ensure_target as ensure_target
from openslots.connectors.database.providers import provider_id_named as provider_id_named
from openslots.domain import clock
from openslots.domain.contact import name_keys
from openslots.domain.statuses import ConnectionStatus, InvitationStatus
from openslots.schemas.roster import Rejection, rule_message

STAGING_COLUMNS = (
    "batch_id",
    "line",
    "client_ref",
    "first_name",
    "last_name",
    "date_of_birth",
    "email",
    "mobile_phone",
    "guardian_first_name",
    "guardian_last_name",
    "first_key",
    "name_key",
    "row_hash",
)
NULLABLE_STAGING_COLUMNS = ("email", "mobile_phone", "guardian_first_name", "guardian_last_name")
CLIENT_FIELDS = (
    "first_name",
    "last_name",
    "date_of_birth",
    "email",
    "mobile_phone",
    "guardian_first_name",
    "guardian_last_name",
)


STAGING = cast(Table, RosterStaging.__table__)
CLIENTS = cast(Table, Client.__table__)


def auto_invites(conn: Connection, provider_id: int) -> bool:
    return bool(
        conn.execute(select(Provider.auto_invite).where(Provider.id == provider_id)).scalar_one()
    )


def start_batch(
    conn: Connection,
    provider: str,
    location: str,
    integrated: bool,
    source: str,
    mode: ImportMode,
    strict: bool,
) -> int:
    """Open a batch. The provider and location are resolved when the batch applies."""
    return conn.execute(
        insert(ImportBatch)
        .values(
            provider_name=provider,
            location_name=location,
            integrated=integrated,
            source=source,
            mode=mode,
            strict=strict,
            status=BatchStatus.RUNNING,
            worker_id=this_worker(),
            heartbeat_at=clock.now(),
        )
        .returning(ImportBatch.id)
    ).scalar_one()


def record_findings(conn: Connection, batch_id: int, findings: Iterable[Rejection]) -> int:
    rows = [
        {
            "batch_id": batch_id,
            "line": f.line,
            "field": f.field,
            "rule": f.rule,
            "message": f.message,
            "severity": f.severity,
        }
        for f in findings
    ]
    if rows:
        conn.execute(insert(ImportRejection), rows)
    return len(rows)


def stage_rows(conn: Connection, batch_id: int, accepted: pd.DataFrame) -> None:
    """Write a validated chunk to staging: COPY on PostgreSQL, executemany elsewhere."""
    if accepted.empty:
        return
    frame = pd.DataFrame(
        {
            "batch_id": batch_id,
            "line": accepted["line"],
            "client_ref": accepted["client_id"],
            "first_name": accepted["first_name"],
            "last_name": accepted["last_name"],
            "date_of_birth": accepted["date_of_birth"],
            "email": accepted["email"],
            "mobile_phone": accepted["mobile_phone"],
            "guardian_first_name": accepted["guardian_first_name"],
            "guardian_last_name": accepted["guardian_last_name"],
            "first_key": accepted["first_name"].str.casefold(),
            "name_key": name_keys(accepted["first_name"], accepted["last_name"]),
            # A row's fingerprint (domain/fingerprints.py): only rows read from a roster file.
            "row_hash": accepted.get("row_hash"),
        }
    )
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, frame)
    else:
        # Like COPY, the state is left to its server default (StagingState.OK).
        params = frame.astype(object).where((frame != "") & frame.notna(), None)
        placeholders = ", ".join("?" for _ in STAGING_COLUMNS)
        conn.exec_driver_sql(
            f"INSERT INTO roster_staging ({', '.join(STAGING_COLUMNS)}) VALUES ({placeholders})",
            list(params.itertuples(index=False, name=None)),
        )


def _copy_rows(conn: Connection, frame: pd.DataFrame) -> None:
    # pyarrow writes CSV ~10x faster than pandas. In COPY's CSV format a null is an unquoted
    # empty field, and pyarrow quotes every empty string: optional columns become nulls first.
    for column in NULLABLE_STAGING_COLUMNS:
        frame[column] = frame[column].where(frame[column] != "", None)
    buffer = io.BytesIO()
    pa_csv.write_csv(
        pa.Table.from_pandas(frame, preserve_index=False),
        buffer,
        write_options=pa_csv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(
            f"COPY roster_staging ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
        ) as copy,
    ):
        copy.write(buffer.getvalue())


def reject_in_file_duplicates(conn: Connection, batch_id: int) -> list[Rejection]:
    """Keep the first row of each client: a row is rejected when a row kept before it has the
    same Client ID, or the same email + date of birth + first name; the message names that
    kept row. Only rows involved in some duplicate are read (normally a handful)."""
    # Grouping finds the repeated keys with two hash aggregates over the keys alone; window
    # functions sorted every staged row, whole, twice (spilling to disk at a million rows).
    # The rows are joined to those keys: as `IN (...) OR IN (...)` PostgreSQL planned a
    # subplan per row, which took over six minutes at a million rows.
    columns = "s.id, s.line, s.client_ref, s.email, s.date_of_birth, s.first_key"
    involved = conn.execute(
        text(
            f"""
            SELECT {columns} FROM roster_staging s JOIN (
              SELECT client_ref FROM roster_staging WHERE batch_id = :batch
              GROUP BY client_ref HAVING COUNT(*) > 1
            ) refs ON refs.client_ref = s.client_ref
            WHERE s.batch_id = :batch
            UNION
            SELECT {columns} FROM roster_staging s JOIN (
              SELECT email, date_of_birth, first_key FROM roster_staging
              WHERE batch_id = :batch AND email IS NOT NULL
              GROUP BY email, date_of_birth, first_key HAVING COUNT(*) > 1
            ) people ON people.email = s.email AND people.date_of_birth = s.date_of_birth
              AND people.first_key = s.first_key
            WHERE s.batch_id = :batch
            ORDER BY 2
            """
        ),
        {"batch": batch_id},
    ).all()
    kept_refs: dict[str, int] = {}
    kept_people: dict[tuple[object, ...] | None, int] = {}
    findings, rejected_ids = [], []
    for row_id, line, ref, email, dob, first_key in involved:
        # Without an email (HL7 feeds) a first name and a birthday do not make one person.
        person = (email, dob, first_key) if email is not None else None
        if ref in kept_refs:
            rule, field, other = "duplicate_client_id", "client_id", kept_refs[ref]
        elif person is not None and person in kept_people:
            rule, field, other = "duplicate_person", "email", kept_people[person]
        else:
            kept_refs[ref] = line
            if person is not None:
                kept_people[person] = line
            continue
        findings.append(Rejection(line, field, rule, rule_message(rule, field, other_line=other)))
        rejected_ids.append(row_id)
    _delete_staged(conn, rejected_ids)
    return findings


def _delete_staged(conn: Connection, ids: list[int]) -> None:
    for start in range(0, len(ids), 10_000):
        conn.execute(delete(RosterStaging).where(RosterStaging.id.in_(ids[start : start + 10_000])))


# Tier 1: Client ID = MRN; 2: email + date of birth; 3: name key + date of birth. A row only
# takes the matches of its best tier.
_TIER_JOINS = (
    "c.mrn = s.client_ref",
    "c.email = s.email AND c.date_of_birth = s.date_of_birth",
    "c.date_of_birth = s.date_of_birth AND c.name_key = s.name_key",
)
# Booleans are written as conditions (`c.status = :approved`, `NOT ambiguous`) and bound
# values, which PostgreSQL and SQLite (0/1) both read, so no dialect spells TRUE/FALSE here.
_MATCH_SQL = """
SELECT s.batch_id, s.id, s.line, s.client_ref, c.id, c.mrn, c.status = :approved,
       c.email || '|' || CAST(c.date_of_birth AS VARCHAR(10)), {tier}
FROM roster_staging s JOIN connections c ON c.provider_id = :provider AND {join}
WHERE s.batch_id = :batch {exclude}
"""


@dataclass
class MatchOutcome:
    rejections: list[Rejection]  # invite mode: rows of clients already Approved
    reviews: list[Rejection]


def match_connections(
    conn: Connection, batch_id: int, provider_id: int, mode: ImportMode
) -> MatchOutcome:
    """Match staged rows to the provider's connections, set-wise, and decide what each may do.

    Never guessed: a row matching connections of several people (ambiguous) is held for review
    without an invitation; two rows claiming one connection (shared), or a connection holding
    a different MRN, go to review unchanged. An unambiguous match to an Approved connection is
    rejected in invite mode (the seed's rule) and kept without an invitation in sync mode.
    """
    parts = []
    for tier, join in enumerate(_TIER_JOINS, start=1):
        exclude = "".join(
            f" AND NOT EXISTS (SELECT 1 FROM connections c{n} WHERE c{n}.provider_id = :provider"
            f" AND {earlier.replace('c.', f'c{n}.')})"
            for n, earlier in enumerate(_TIER_JOINS[: tier - 1], start=1)
        )
        parts.append(_MATCH_SQL.format(tier=tier, join=join, exclude=exclude))
    params = {
        "batch": batch_id,
        "provider": provider_id,
        "approved": ConnectionStatus.APPROVED,
        "yes": True,
    }
    conn.execute(
        text(
            "INSERT INTO roster_matches (batch_id, row_id, line, client_ref, connection_id, "
            "connection_mrn, approved, person_key, tier) " + " UNION ALL ".join(parts)
        ),
        params,
    )
    refresh_statistics(conn, "roster_matches")
    mark = "UPDATE roster_matches SET {flag} = :yes WHERE batch_id = :batch AND {key} IN ({q})"
    conn.execute(
        text(
            mark.format(
                flag="ambiguous",
                key="row_id",
                q=(
                    "SELECT row_id FROM roster_matches WHERE batch_id = :batch GROUP BY row_id "
                    "HAVING COUNT(DISTINCT person_key) > 1"
                ),
            )
        ),
        params,
    )

    rejections: list[Rejection] = []
    approved = list(
        conn.execute(
            text(
                "SELECT DISTINCT row_id, line FROM roster_matches WHERE batch_id = :batch "
                "AND approved AND NOT ambiguous"
            ),
            params,
        )
    )
    if approved and mode is ImportMode.INVITE:
        rule = "approved_connection_exists"
        rejections = [
            Rejection(line, "client_id", rule, rule_message(rule, "client_id"))
            for _row, line in approved
        ]
        row_ids = [row for row, _line in approved]
        _delete_staged(conn, row_ids)
        for start in range(0, len(row_ids), 10_000):
            conn.execute(
                delete(RosterMatch).where(
                    RosterMatch.batch_id == batch_id,
                    RosterMatch.row_id.in_(row_ids[start : start + 10_000]),
                )
            )
    elif approved:
        _set_state(conn, batch_id, StagingState.CONNECTED, "approved AND NOT ambiguous")
    _set_state(conn, batch_id, StagingState.HELD, "ambiguous")

    conn.execute(
        text(
            mark.format(
                flag="shared",
                key="connection_id",
                q=(
                    "SELECT connection_id FROM roster_matches WHERE batch_id = :batch "
                    "AND NOT ambiguous GROUP BY connection_id "
                    "HAVING COUNT(DISTINCT client_ref) > 1"
                ),
            )
        ),
        params,
    )
    review_sql = {
        "ambiguous_match": "ambiguous",
        "shared_connection": "NOT ambiguous AND shared",
        "mrn_conflict": "NOT ambiguous AND NOT shared "
        "AND connection_mrn IS NOT NULL AND connection_mrn <> client_ref",
    }
    reviews = [
        Rejection(line, "client_id", rule, rule_message(rule, "client_id"), FindingSeverity.REVIEW)
        for rule, where in review_sql.items()
        for (line,) in conn.execute(
            text(f"SELECT DISTINCT line FROM roster_matches WHERE batch_id = :batch AND {where}"),
            params,
        )
    ]
    return MatchOutcome(rejections, sorted(reviews, key=lambda r: (r.line, r.rule)))


def _set_state(conn: Connection, batch_id: int, state: StagingState, where: str) -> None:
    conn.execute(
        text(
            f"UPDATE roster_staging SET state = :state WHERE batch_id = :batch AND id IN "
            f"(SELECT row_id FROM roster_matches WHERE batch_id = :batch AND {where})"
        ),
        {"batch": batch_id, "state": state},
    )


def plan_for_warm_tables(conn: Connection) -> None:
    """For this transaction, tell PostgreSQL that a random page read costs about what a
    sequential one does (`random_page_cost` 1.1, PostgreSQL's advice for SSDs; the default 4
    assumes spinning disks). The tables an import joins are the ones it just read or wrote:
    with 4, every statement of a re-sync staging 1,000 changed rows hashed all 100k clients
    (30-100 ms each) instead of looking the 1,000 up. Large batches still get hash joins."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL random_page_cost = 1.1")


def refresh_statistics(conn: Connection, *tables: str) -> None:
    """ANALYZE on PostgreSQL after bulk changes. Without it the planner believes a freshly
    staged table is nearly empty and joins a million rows by nested index lookups (5x slower
    than the hash joins it picks once it knows)."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table}")


def estimated_rows(conn: Connection, table: str) -> float:
    """The planner's row count of a table as its last ANALYZE left it (0 where unknown:
    SQLite, or never analysed)."""
    if conn.dialect.name != "postgresql":
        return 0.0
    rows = conn.exec_driver_sql(
        f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass"
    ).scalar_one()
    return max(float(rows), 0.0)


def clients_outgrow_statistics(conn: Connection, provider_id: int, new_clients: int) -> bool:
    """Whether inserting `new_clients` (asked before they are) leaves PostgreSQL's statistics
    of clients behind: the provider's first clients, or at least a fifth of the rows the
    statistics know. (The planner scales the known row count by the table's size anyway: an
    HL7 drop of 100k new patients analysed clients once per provider group, 25 times.)"""
    if conn.dialect.name != "postgresql":
        return False
    first = (
        conn.execute(
            select(CLIENTS.c.id).where(CLIENTS.c.provider_id == provider_id).limit(1)
        ).first()
        is None
    )
    return first or new_clients >= estimated_rows(conn, "clients") / 5


def _client_changes(batch_id: int, provider_id: int) -> tuple[Select[Any], ColumnElement[bool]]:
    """Staged rows of the batch joined to the provider's client of the same Client ID (none
    for a new client), and the condition "the row would change that client"."""
    staged, clients = STAGING, CLIENTS
    joined = staged.outerjoin(
        clients,
        and_(clients.c.provider_id == provider_id, clients.c.client_ref == staged.c.client_ref),
    )
    changed = or_(*[clients.c[name].is_distinct_from(staged.c[name]) for name in CLIENT_FIELDS])
    return select().select_from(joined).where(staged.c.batch_id == batch_id), changed


def count_client_changes(conn: Connection, batch_id: int, provider_id: int) -> tuple[int, int]:
    """(new clients, existing clients whose details change) for the staged rows."""
    rows, changed = _client_changes(batch_id, provider_id)
    new, updated = conn.execute(
        rows.add_columns(
            func.count().filter(CLIENTS.c.id.is_(None)),
            func.count().filter(and_(CLIENTS.c.id.is_not(None), changed)),
        )
    ).one()
    return int(new), int(updated)


def upsert_clients(conn: Connection, batch_id: int, provider_id: int) -> None:
    """Insert new clients and update changed ones. Rows that change nothing are compared
    with the stored client before the statement touches `clients`: ON CONFLICT DO UPDATE
    locks every conflicting row even when its WHERE then skips the update (a write of the
    row's header, and WAL), so on a nightly re-sync where nothing changed no row is touched."""
    staged, clients = STAGING, CLIENTS
    now = clock.now()
    rows, changed = _client_changes(batch_id, provider_id)
    source = rows.add_columns(
        literal(provider_id, Integer).label("provider_id"),
        staged.c.client_ref,
        *[staged.c[name] for name in CLIENT_FIELDS],
        literal(batch_id, Integer).label("last_batch_id"),
    ).where(or_(clients.c.id.is_(None), changed))
    columns = ["provider_id", "client_ref", *CLIENT_FIELDS, "last_batch_id"]
    statement = upsert(conn, clients).from_select(columns, source)
    # Still an upsert: a client inserted or changed since the join read it (another import,
    # an HL7 feed) is updated rather than failing the batch.
    statement = statement.on_conflict_do_update(
        index_elements=[clients.c.provider_id, clients.c.client_ref],
        set_={name: statement.excluded[name] for name in CLIENT_FIELDS}
        | {"last_batch_id": statement.excluded.last_batch_id, "updated_at": now},
        where=or_(
            *[clients.c[name].is_distinct_from(statement.excluded[name]) for name in CLIENT_FIELDS]
        ),
    )
    conn.execute(statement)


def apply_mrn_updates(conn: Connection, batch_id: int, provider_id: int) -> int:
    """Set the MRN of unambiguously matched connections that have none, then link every such
    connection holding the row's MRN to its client record. Returns the MRNs set."""
    usable = "m.batch_id = :batch AND NOT m.ambiguous AND NOT m.shared"
    params = {"batch": batch_id, "provider": provider_id, "now": clock.now()}
    mapped = conn.execute(
        text(
            f"UPDATE connections SET mrn = m.client_ref, updated_at = :now FROM roster_matches m "
            f"WHERE m.connection_id = connections.id AND {usable} AND connections.mrn IS NULL"
        ),
        params,
    ).rowcount
    conn.execute(
        text(
            f"UPDATE connections SET client_id = c.id FROM roster_matches m JOIN clients c "
            f"ON c.provider_id = :provider AND c.client_ref = m.client_ref "
            f"WHERE m.connection_id = connections.id AND {usable} "
            f"AND connections.mrn = m.client_ref"
        ),
        params,
    )
    return int(mapped or 0)


def queue_invitations(conn: Connection, batch_id: int, target: Target) -> int:
    """One invitation per new client x location, in status Queued: the intent to send its first
    attempt (`attempt` 1, none materialised). The dispatch flow writes its messages.

    Skipped: rows matching an Approved connection (sync mode), clients already invited at this
    location, and anyone whose email or phone opted out of this provider (on any channel).
    """
    now = clock.now()
    invitations = cast(Table, Invitation.__table__)
    columns = (
        "client_id",
        "provider_id",
        "location_id",
        "status",
        "batch_id",
        "send_count",
        "created_at",
        "updated_at",
    )
    values = {
        "provider_id": target.provider_id,
        "location_id": target.location_id,
        "status": InvitationStatus.QUEUED,
        "batch_id": batch_id,
        "send_count": 0,
        "created_at": now,
        "updated_at": now,
    }
    source = (
        select(
            Client.id,
            *[literal(values[name], invitations.c[name].type) for name in columns[1:]],
        )
        .select_from(RosterStaging)
        .join(
            Client,
            and_(
                Client.provider_id == target.provider_id,
                Client.client_ref == RosterStaging.client_ref,
            ),
        )
        .where(
            RosterStaging.batch_id == batch_id,
            RosterStaging.state == StagingState.OK,
            or_(Client.email.is_not(None), Client.mobile_phone.is_not(None)),
            not_opted_out(target.provider_id, Client.email, Client.mobile_phone),
        )
    )
    # Clients already invited at this location are left to the unique (client, location)
    # index: ON CONFLICT DO NOTHING probes it per row and writes nothing. An anti-join on the
    # table being written was planned from stale statistics into a full scan of invitations
    # per row (12+ minutes for a million rows), and marking those rows in staging first
    # rewrote every staged row of a re-sync (5 s of a 15 s re-sync at 100k rows).
    statement = upsert(conn, invitations).from_select(list(columns), source, include_defaults=False)
    # Core reads an INSERT's row count from the driver only when asked to.
    inserted = conn.execute(
        statement.on_conflict_do_nothing(
            index_elements=[invitations.c.client_id, invitations.c.location_id]
        ),
        execution_options={"preserve_rowcount": True},
    ).rowcount
    return int(inserted or 0)


def clear_staging(conn: Connection, batch_id: int) -> None:
    conn.execute(delete(RosterStaging).where(RosterStaging.batch_id == batch_id))
    conn.execute(delete(RosterMatch).where(RosterMatch.batch_id == batch_id))


def finish_batch(conn: Connection, batch_id: int, status: BatchStatus, **counts: object) -> None:
    conn.execute(
        update(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .values(status=status, finished_at=clock.now(), **counts)
    )
