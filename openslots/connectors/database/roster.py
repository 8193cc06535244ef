"""Set-based roster writes: stage validated chunks, then apply a whole file in a few statements.

Staging uses COPY on PostgreSQL and executemany on SQLite; applying is a handful of
INSERT ... SELECT / ON CONFLICT statements in one transaction, so invitations are queued in the
same transaction as the clients they invite. Nothing here loops over rows in Python except the
MRN candidates, whose number is bounded by the provider's connections.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import pandas as pd
from sqlalchemy import (
    Connection,
    Integer,
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
from sqlalchemy.dialects import postgresql, sqlite

from openslots.connectors.database.models import (
    BatchStatus,
    Client,
    ImportBatch,
    ImportMode,
    ImportRejection,
    Location,
    Provider,
    RosterStaging,
)
from openslots.domain.matching import Candidate, plan_mrn_mapping
from openslots.domain.statuses import ConnectionStatus
from openslots.errors import ConfigurationError
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
)
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Target:
    provider_id: int
    location_id: int
    integrated: bool
    provider_created: bool
    location_created: bool


def ensure_target(
    conn: Connection, provider: str, location: str, *, integrated: bool | None, create: bool
) -> Target:
    """Find (or, when `create`, make) the provider and location; `integrated=True` marks it."""
    provider_row = conn.execute(
        select(Provider.id, Provider.integrated).where(Provider.name == provider)
    ).one_or_none()
    provider_created = provider_row is None
    if provider_row is None:
        if not create:
            raise ConfigurationError(
                f"unknown provider {provider!r}; add it with `openslots providers add`"
            )
        provider_id = conn.execute(
            insert(Provider)
            .values(name=provider, integrated=bool(integrated))
            .returning(Provider.id)
        ).scalar_one()
        is_integrated = bool(integrated)
    else:
        provider_id, is_integrated = provider_row
        if integrated and not is_integrated:
            conn.execute(update(Provider).where(Provider.id == provider_id).values(integrated=True))
            is_integrated = True
    location_id = conn.execute(
        select(Location.id).where(Location.provider_id == provider_id, Location.name == location)
    ).scalar_one_or_none()
    location_created = location_id is None
    if location_id is None:
        if not create:
            raise ConfigurationError(f"unknown location {location!r} for provider {provider!r}")
        location_id = conn.execute(
            insert(Location).values(provider_id=provider_id, name=location).returning(Location.id)
        ).scalar_one()
    return Target(provider_id, location_id, is_integrated, provider_created, location_created)


def start_batch(
    conn: Connection, target: Target, source: str, mode: ImportMode, strict: bool
) -> int:
    return conn.execute(
        insert(ImportBatch)
        .values(
            provider_id=target.provider_id,
            location_id=target.location_id,
            source=source,
            mode=mode,
            strict=strict,
            status=BatchStatus.RUNNING,
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
        }
    )
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, frame)
    else:
        params = frame.astype(object).where(frame != "", None)
        placeholders = ", ".join("?" for _ in STAGING_COLUMNS)
        conn.exec_driver_sql(
            f"INSERT INTO roster_staging ({', '.join(STAGING_COLUMNS)}, state) "
            f"VALUES ({placeholders}, 'ok')",
            list(params.itertuples(index=False, name=None)),
        )


def _copy_rows(conn: Connection, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    # CSV COPY: an unquoted empty field is NULL (optional columns), quoted values keep commas.
    frame.to_csv(buffer, header=False, index=False)
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
    """Keep the first of rows sharing a Client ID, or an email + date of birth + first name."""
    rows = conn.execute(
        text(
            """
            SELECT id, line, first_ref_line, first_person_line FROM (
              SELECT id, line,
                MIN(line) OVER (PARTITION BY client_ref) AS first_ref_line,
                MIN(line) OVER (PARTITION BY email, date_of_birth, lower(first_name))
                  AS first_person_line
              FROM roster_staging WHERE batch_id = :batch
            ) ranked
            WHERE line > first_ref_line OR line > first_person_line
            """
        ),
        {"batch": batch_id},
    ).all()
    findings = []
    for _id, line, first_ref_line, first_person_line in rows:
        if line > first_ref_line:
            rule, other = "duplicate_client_id", first_ref_line
        else:
            rule, other = "duplicate_person", first_person_line
        field = "client_id" if rule == "duplicate_client_id" else "email"
        findings.append(Rejection(line, field, rule, rule_message(rule, field, other_line=other)))
    _delete_staged(conn, [row[0] for row in rows])
    return findings


def _delete_staged(conn: Connection, ids: list[int]) -> None:
    for start in range(0, len(ids), 10_000):
        conn.execute(delete(RosterStaging).where(RosterStaging.id.in_(ids[start : start + 10_000])))


_CANDIDATES_SQL = """
SELECT s.id, s.line, s.client_ref, c.id, c.mrn, c.status,
       c.email || '|' || CAST(c.date_of_birth AS VARCHAR(10)), {tier}
FROM roster_staging s JOIN connections c ON c.provider_id = :provider AND {join}
WHERE s.batch_id = :batch {exclude}
"""
_TIER_JOINS = (
    "c.mrn = s.client_ref",
    "c.email = s.email AND c.date_of_birth = s.date_of_birth",
    "c.date_of_birth = s.date_of_birth AND lower(c.first_name) = lower(s.first_name) "
    "AND lower(c.last_name) = lower(s.last_name)",
)


def _candidates(conn: Connection, batch_id: int, provider_id: int) -> list[Candidate]:
    """Each row's matching connections, from its best tier only (one UNION ALL statement)."""
    parts = []
    for tier, join in enumerate(_TIER_JOINS, start=1):
        exclude = "".join(
            f" AND NOT EXISTS (SELECT 1 FROM connections c{n} WHERE c{n}.provider_id = :provider"
            f" AND {earlier.replace('c.', f'c{n}.')})"
            for n, earlier in enumerate(_TIER_JOINS[: tier - 1], start=1)
        )
        parts.append(_CANDIDATES_SQL.format(tier=tier, join=join, exclude=exclude))
    result = conn.execute(
        text(" UNION ALL ".join(parts)), {"batch": batch_id, "provider": provider_id}
    )
    return [
        Candidate(
            row_id=row[0],
            line=row[1],
            client_ref=row[2],
            connection_id=row[3],
            connection_mrn=row[4],
            connection_status=ConnectionStatus(row[5]),
            person_key=row[6],
            tier=row[7],
        )
        for row in result
    ]


@dataclass
class MatchOutcome:
    rejections: list[Rejection]  # invite mode: rows of clients already Approved
    reviews: list[Rejection]
    mrn_updates: dict[int, str]  # connection id -> MRN to set (it has none)
    linked: dict[int, str]  # connection id -> client_ref it belongs to


def match_connections(
    conn: Connection, batch_id: int, target: Target, mode: ImportMode
) -> MatchOutcome:
    """Match staged rows to the provider's connections and decide what each match may do.

    Rows matching an Approved connection are rejected in invite mode (the seed's rule) and
    kept without an invitation in sync mode (state `connected`)."""
    candidates = _candidates(conn, batch_id, target.provider_id)
    plan = plan_mrn_mapping(candidates)
    rejections: list[Rejection] = []
    approved_ids = sorted(plan.approved_rows)
    if mode is ImportMode.INVITE and approved_ids:
        lines = {c.row_id: c.line for c in candidates}
        rejections = [
            Rejection(
                lines[row_id],
                "client_id",
                "approved_connection_exists",
                rule_message("approved_connection_exists", "client_id"),
            )
            for row_id in approved_ids
        ]
        _delete_staged(conn, approved_ids)
        plan = plan_mrn_mapping(c for c in candidates if c.row_id not in plan.approved_rows)
    elif approved_ids:
        for start in range(0, len(approved_ids), 10_000):
            conn.execute(
                update(RosterStaging)
                .where(RosterStaging.id.in_(approved_ids[start : start + 10_000]))
                .values(state="connected")
            )
    reviews = [
        Rejection(line, "client_id", rule, rule_message(rule, "client_id"), "review")
        for line, rule in plan.reviews
    ]
    return MatchOutcome(rejections, reviews, plan.mrn_updates, plan.linked)


def count_client_changes(conn: Connection, batch_id: int, provider_id: int) -> tuple[int, int]:
    """(new clients, existing clients whose details change) for the staged rows."""
    staged, clients = STAGING, CLIENTS
    joined = staged.outerjoin(
        clients,
        and_(clients.c.provider_id == provider_id, clients.c.client_ref == staged.c.client_ref),
    )
    changed = or_(*[clients.c[name].is_distinct_from(staged.c[name]) for name in CLIENT_FIELDS])
    new, updated = conn.execute(
        select(
            func.count().filter(clients.c.id.is_(None)),
            func.count().filter(and_(clients.c.id.is_not(None), changed)),
        )
        .select_from(joined)
        .where(staged.c.batch_id == batch_id)
    ).one()
    return int(new), int(updated)


def upsert_clients(conn: Connection, batch_id: int, provider_id: int) -> None:
    """Insert new clients and update changed ones (rows that change nothing are not touched)."""
    staged, clients = STAGING, CLIENTS
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    now = _now()
    source = select(
        literal(provider_id, Integer).label("provider_id"),
        staged.c.client_ref,
        *[staged.c[name] for name in CLIENT_FIELDS],
        literal(batch_id, Integer).label("last_batch_id"),
    ).where(staged.c.batch_id == batch_id)
    columns = ["provider_id", "client_ref", *CLIENT_FIELDS, "last_batch_id"]
    statement = dialect_insert(clients).from_select(columns, source)
    statement = statement.on_conflict_do_update(
        index_elements=[clients.c.provider_id, clients.c.client_ref],
        set_={name: statement.excluded[name] for name in CLIENT_FIELDS}
        | {"last_batch_id": statement.excluded.last_batch_id, "updated_at": now},
        where=or_(
            *[clients.c[name].is_distinct_from(statement.excluded[name]) for name in CLIENT_FIELDS]
        ),
    )
    conn.execute(statement)


def apply_mrn_updates(conn: Connection, provider_id: int, outcome: MatchOutcome) -> None:
    """Set the MRN where a connection has none, and link every matched connection to its
    client record (after `upsert_clients`, so the client exists)."""
    if outcome.mrn_updates:
        conn.execute(
            text(
                "UPDATE connections SET mrn = :ref, updated_at = :now "
                "WHERE id = :cid AND mrn IS NULL"
            ),
            [{"cid": cid, "ref": ref, "now": _now()} for cid, ref in outcome.mrn_updates.items()],
        )
    if outcome.linked:
        conn.execute(
            text(
                "UPDATE connections SET client_id = (SELECT id FROM clients "
                "WHERE provider_id = :provider AND client_ref = :ref) WHERE id = :cid"
            ),
            [
                {"cid": cid, "ref": ref, "provider": provider_id}
                for cid, ref in outcome.linked.items()
            ],
        )


def queue_invitations(conn: Connection, batch_id: int, target: Target) -> int:
    """One invitation per new client x location, plus its outbox messages, in this transaction.

    Skipped: rows matching an Approved connection (sync mode), clients already invited at this
    location, and anyone whose email or phone opted out of this provider (on any channel).
    """
    now = _now()
    params = {
        "batch": batch_id,
        "provider": target.provider_id,
        "location": target.location_id,
        "now": now,
    }
    inserted = conn.execute(
        text(
            """
            INSERT INTO invitations (client_id, provider_id, location_id, status, batch_id,
                                     send_count, created_at, updated_at)
            SELECT c.id, :provider, :location, 'Queued', :batch, 0, :now, :now
            FROM roster_staging s
            JOIN clients c ON c.provider_id = :provider AND c.client_ref = s.client_ref
            WHERE s.batch_id = :batch AND s.state = 'ok'
              AND NOT EXISTS (SELECT 1 FROM invitations i
                              WHERE i.client_id = c.id AND i.location_id = :location)
              AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.provider_id = :provider
                              AND ((o.channel = 'email' AND o.address = c.email)
                                OR (o.channel = 'sms' AND o.address = c.mobile_phone)))
            """
        ),
        params,
    ).rowcount
    conn.execute(
        text(
            """
            INSERT INTO outbox (idempotency_key, kind, channel, invitation_id, status, attempts,
                                created_at)
            SELECT 'invite:' || CAST(i.id AS VARCHAR(20)) || ':1:email', 'invitation', 'email',
                   i.id, 'pending', 0, :now
            FROM invitations i WHERE i.batch_id = :batch
            UNION ALL
            SELECT 'invite:' || CAST(i.id AS VARCHAR(20)) || ':1:sms', 'invitation', 'sms',
                   i.id, 'pending', 0, :now
            FROM invitations i JOIN clients c ON c.id = i.client_id
            WHERE i.batch_id = :batch AND c.mobile_phone IS NOT NULL
            """
        ),
        {"batch": batch_id, "now": now},
    )
    return int(inserted or 0)


def clear_staging(conn: Connection, batch_id: int) -> None:
    conn.execute(delete(RosterStaging).where(RosterStaging.batch_id == batch_id))


def finish_batch(conn: Connection, batch_id: int, status: BatchStatus, **counts: object) -> None:
    conn.execute(
        update(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .values(status=status, finished_at=_now(), **counts)
    )
