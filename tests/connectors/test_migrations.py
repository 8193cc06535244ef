"""The Alembic migrations build exactly the models' schema, on both databases; released revisions
are frozen, and a database at any earlier revision upgrades to head with its rows intact.

Adding revision N (see "Released revisions" below): add its file's sha256 to RELEASED_REVISIONS,
and a writer for revision N-1 (the previous head) to ROW_WRITERS: rows in every table N-1 has,
written with plain Core against N-1's own tables, which must still be there at head.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from openslots.connectors.database import get_engine, require_current_schema, upgrade_database
from openslots.connectors.database.engine import MIGRATIONS_DIR, alembic_config
from openslots.connectors.database.models import Base
from openslots.settings import Settings


def test_migrations_match_the_models(db: Engine) -> None:
    config = alembic_config(db.url.render_as_string(hide_password=False))
    with db.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises when autogenerate would find a difference


def test_upgrade_is_idempotent_and_creates_every_table(db: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config(str(db.url))).get_current_head()
    assert upgrade_database() == upgrade_database() == head
    assert set(Base.metadata.tables) <= set(inspect(db).get_table_names())


def test_an_unmigrated_database_is_a_clear_error(tmp_path: Path) -> None:
    from openslots.errors import ConfigurationError

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigurationError, match="run `openslots db upgrade` first"):
        require_current_schema(settings)
    upgrade_database(settings)
    require_current_schema(settings)  # now current: no error


def test_the_schema_check_reads_the_head_alembic_reads_and_names_both_revisions(
    tmp_path: Path,
) -> None:
    from openslots.connectors.database.engine import head_revision
    from openslots.errors import ConfigurationError

    # The check reads the scripts' text instead of importing alembic: it must agree with it.
    alembic_head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head_revision() == alembic_head
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'behind.db'}")
    previous = _scripts()[-2].revision
    upgrade_database(settings, revision=previous)
    with pytest.raises(ConfigurationError, match=f"at revision {previous}, this code needs "
                       f"{alembic_head}"):  # fmt: skip
        require_current_schema(settings)


# --- Released revisions --------------------------------------------------------------------------

# sha256 of every revision file as released (LF line endings). A released revision may already be
# applied to a production database: changing it would leave that database silently different.
RELEASED_REVISIONS = {
    "0001_initial_schema.py": "3b6b35a2301b244a7f7720a0595188a96cf81597a8c8f89cda78ba241f947a13",
    "0002_dispatch_intents.py": "22d12ffaf9888185653ba90f30937308a7b833fa497903b646ca9795bc565352",
    "0003_open_slots.py": "66d591634fe2fe3b6df86936b600cc6ddf2dbe3f156db45cf903f9e25dd11890",
    "0004_alert_lifecycle_resend_cadence_feeds.py": (
        "032e18f622d23f163038e39b9fb1733345e4bfc2756aae58681cec8f6ec2dc25"
    ),
    "0005_roster_fingerprints.py": (
        "3b847137a367bb9f0d5255739b30b4103194deeefbd94500a2fe9faa5e78aefc"
    ),
    "0006_hl7_message_identity_unique.py": (
        "18eeff7f5c21dc72e2ae9f2308fc56997f685f2b13cede9e28967389a2315d91"
    ),
}
VERSIONS_DIR = MIGRATIONS_DIR / "versions"


def _scripts() -> list[Script]:
    """Every revision, base first."""
    directory = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return list(reversed(list(directory.walk_revisions())))


def test_released_revisions_are_never_edited() -> None:
    files = {path.name for path in VERSIONS_DIR.glob("*.py")}
    unlisted = sorted(files - set(RELEASED_REVISIONS))
    assert not unlisted, (
        f"revision file(s) {unlisted} are not in RELEASED_REVISIONS: add each file's sha256 there "
        "when the revision is final; from then on it is frozen"
    )
    assert {Path(s.path).name for s in _scripts()} == files, "a file in versions/ is no revision"
    for name, released in RELEASED_REVISIONS.items():
        digest = hashlib.sha256((VERSIONS_DIR / name).read_bytes().replace(b"\r\n", b"\n"))
        assert digest.hexdigest() == released, (
            f"{name} was released and has changed since: revert it and add a new revision "
            "instead (an applied revision is never edited)"
        )


# --- Rows written at an earlier revision survive the upgrade to head ------------------------------


@dataclass(frozen=True)
class Written:
    """One row a writer inserted: its table, its id, and the values head must still hold."""

    table: str
    id: Any
    values: dict[str, Any]
    key: str = "id"  # the primary key column (app_secrets: name)


class RowWriter:
    """Inserts rows with Core into the tables reflected at one revision (never the head models)."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.tables = MetaData()
        self.tables.reflect(conn)
        self.written: list[Written] = []

    def insert(self, table: str, **values: Any) -> int:
        target = self.tables.tables[table]
        statement = target.insert().values(**values).returning(target.c.id)
        row_id = int(self.conn.execute(statement).scalar_one())
        self.written.append(Written(table, row_id, values))
        return row_id

    def insert_keyed(self, table: str, key: str, **values: Any) -> None:
        """A row of a table whose primary key is not `id` (app_secrets)."""
        self.conn.execute(self.tables.tables[table].insert().values(**values))
        self.written.append(Written(table, values[key], values, key))


AT = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)
LATER = AT + dt.timedelta(days=21, hours=2)


def _rows_for_0001(rows: RowWriter) -> None:
    """Every table of 0001, with the values most likely to be lost by a careless migration:
    non-ASCII names, leading zeros, NULLs next to values, status words, bytes that are not UTF-8.
    """
    provider = rows.insert(
        "providers", name="Clínica Núñez", integrated=True, auto_invite=False, created_at=AT
    )
    location = rows.insert("locations", provider_id=provider, name="North Clinic", created_at=AT)
    rows.insert("providers", name="Plain Practice", integrated=False, auto_invite=True)
    batch = rows.insert(
        "import_batches",
        provider_name="Clínica Núñez",
        location_name="North Clinic",
        integrated=True,
        provider_id=provider,
        location_id=location,
        source="/data/roster-2026-03-01.csv",
        mode="sync",
        strict=False,
        status="completed",
        total_rows=3,
        accepted=2,
        rejected=1,
        warnings=1,
        new_clients=2,
        updated_clients=0,
        mrns_mapped=1,
        needs_review=0,
        queued_invitations=2,
        error=None,
        started_at=AT,
        finished_at=LATER,
    )
    rows.insert(
        "import_rejections",
        batch_id=batch,
        line=3,
        field="date_of_birth",
        rule="calendar_date",
        message="date_of_birth is not a real calendar date",
        severity="error",
    )
    client = rows.insert(
        "clients",
        provider_id=provider,
        client_ref="007",
        first_name="Inés",
        last_name="O'Neil-Jones",
        date_of_birth=dt.date(2012, 2, 29),
        email="guardian.one@example.org",
        mobile_phone="+14155550100",
        guardian_first_name="Karin",
        guardian_last_name="Lindqvist",
        last_batch_id=batch,
        created_at=AT,
        updated_at=LATER,
    )
    connection = rows.insert(
        "connections",
        provider_id=provider,
        location_id=location,
        client_id=client,
        first_name="Inés",
        last_name="O'Neil-Jones",
        date_of_birth=dt.date(2012, 2, 29),
        email="guardian.one@example.org",
        mobile_phone=None,
        name_key="o'neil-jones|ines",
        status="Approved",
        priority="Urgent",
        mrn="000123",
        created_at=AT,
    )
    rows.insert(
        "connections",
        provider_id=provider,
        location_id=location,
        client_id=None,
        first_name="Jürgen",
        last_name="Müller",
        date_of_birth=dt.date(1970, 1, 1),
        email="j.mueller@example.org",
        name_key="muller|jurgen",
        status="Paused",
    )
    invitation = rows.insert(
        "invitations",
        client_id=client,
        provider_id=provider,
        location_id=location,
        status="Opted-Out",
        batch_id=batch,
        status_before_opt_out="Sent",
        requested_at=AT,
        first_sent_at=AT,
        last_sent_at=LATER,
        send_count=2,
    )
    rows.insert(
        "outbox",
        idempotency_key=f"invite:{invitation}:1:email",
        kind="invitation",
        channel="email",
        invitation_id=invitation,
        status="sent",
        attempts=1,
        created_at=AT,
        sent_at=AT,
    )
    rows.insert(
        "outbox",
        idempotency_key=f"invite:{invitation}:1:sms",
        kind="invitation",
        channel="sms",
        invitation_id=invitation,
        status="failed",
        attempts=3,
        last_error="file outbox not writable (NotADirectoryError)",
        lease_expires_at=LATER,
    )
    rows.insert("opt_outs", provider_id=provider, channel="sms", address="+14155550100")
    rows.insert(
        "audit_log",
        entity="invitation",
        entity_id=invitation,
        action="opt-out",
        from_value="Sent",
        to_value="Opted-Out",
        actor="cli:operator",
        reason="patient replied STOP",
        created_at=LATER,
    )
    message = rows.insert(
        "hl7_messages",
        sending_application="EPIC",
        sending_facility="NORTH",
        control_id="EPC0001",
        message_type="SIU^S15",
        content_hash="ab" * 32,
        raw=b"MSH|^~\\&|EPIC|NORTH|||20260301||SIU^S15|EPC0001|P|2.5\rSCH|APT1\xe9\r",
        source="mllp",
        status="applied",
        error=None,
        control_id_reused=False,
        received_at=AT,
        processed_at=LATER,
    )
    rows.insert(
        "slots",
        slot_key="NORTH|APT1",
        provider_id=provider,
        location_id=location,
        filler_id="APT1",
        start="202612011000",
        duration_minutes=30,
        status="open",
        message_id=message,
        opened_at=AT,
        filled_at=None,
    )
    rows.insert(
        "registrations",
        email="guardian.one@example.org",
        date_of_birth=dt.date(1980, 1, 2),
        first_name="Karin",
        last_name="Lindqvist",
        mobile_phone="+14155550100",
        dependent_first_name="Inés",
        dependent_last_name="O'Neil-Jones",
        dependent_date_of_birth=dt.date(2012, 2, 29),
        provider_id=provider,
        location_id=location,
        outcome="dob_match",
        received_at=AT,
    )
    staged = rows.insert(
        "roster_staging",
        batch_id=batch,
        line=2,
        client_ref="007",
        first_name="Inés",
        last_name="O'Neil-Jones",
        date_of_birth=dt.date(2012, 2, 29),
        email=None,
        mobile_phone="4155550100",
        guardian_first_name=None,
        guardian_last_name=None,
        first_key="ines",
        name_key="o'neil-jones|ines",
        state="duplicate",
    )
    rows.insert(
        "roster_matches",
        batch_id=batch,
        row_id=staged,
        line=2,
        client_ref="007",
        connection_id=connection,
        connection_mrn="000123",
        approved=True,
        person_key="2012-02-29|o'neil-jones|ines",
        tier=2,
        ambiguous=True,
        shared=False,
    )


def _rows_for_0002(rows: RowWriter) -> None:
    """Every table of 0002: 0001's rows, an app secret, and the columns 0002 added (an
    invitation's attempts, a dead message a worker held, a slot that 0003 must convert)."""
    _rows_for_0001(rows)
    rows.insert_keyed("app_secrets", "name", name="token-key", value="k" * 43, created_at=AT)
    provider = rows.insert("providers", name="Zone Practice", integrated=False, auto_invite=True)
    location = rows.insert("locations", provider_id=provider, name="Ünter den Linden")
    client = rows.insert(
        "clients",
        provider_id=provider,
        client_ref="0042",
        first_name="Zoë",
        last_name="Ng",
        date_of_birth=dt.date(1990, 5, 6),
        email="zoe@example.org",
    )
    invitation = rows.insert(
        "invitations",
        client_id=client,
        provider_id=provider,
        location_id=location,
        status="Sent",
        send_count=2,
        attempt=2,
        messages_attempt=2,
    )
    rows.insert(
        "outbox",
        idempotency_key=f"invite:{invitation}:2:email",
        kind="resend",
        channel="email",
        invitation_id=invitation,
        status="dead",
        attempts=8,
        last_error="retries exhausted (421)",
        worker_id="host:1:abcd",
        send_started_at=AT,
        next_attempt_at=LATER,
    )
    rows.insert(
        "slots",
        slot_key="APT9|zone",
        provider_id=provider,
        location_id=location,
        filler_id="APT9",
        start="20261203093000-0600",
        duration_minutes=None,
        status="open",
        message_id=None,
        opened_at=AT,
    )


def _rows_for_0003(rows: RowWriter) -> None:
    """Every table of 0003: 0002's rows and the Open Slots columns 0003 added (a location's
    time zone, a connection's Serial order, a claimed slot, its offers and an offer's message)."""
    _rows_for_0002(rows)
    provider = rows.insert("providers", name="Slots Practice", integrated=True, auto_invite=True)
    location = rows.insert(
        "locations", provider_id=provider, name="Lakeside", timezone="America/Chicago"
    )
    connection = rows.insert(
        "connections",
        provider_id=provider,
        location_id=location,
        client_id=None,
        first_name="Zoë",
        last_name="Ng",
        date_of_birth=dt.date(1990, 5, 6),
        email="zoe@example.org",
        mobile_phone="+14155550100",
        name_key="ng|zoe",
        status="Approved",
        priority=None,
        mrn="0042",
        alert_order=1,
        created_at=AT,
    )
    slot = rows.insert(
        "slots",
        slot_key="APT10|slots",
        provider_id=provider,
        location_id=location,
        filler_id="APT10",
        start="2026-12-03T09:30",
        starts_at=LATER,
        duration_minutes=30,
        visit_type="Follow-up",
        status="claimed",
        mode="serial",
        group_size=2,
        timeout_minutes=30,
        opened_at=AT,
        claimed_at=LATER,
    )
    offer = rows.insert(
        "offers",
        slot_id=slot,
        connection_id=connection,
        group_number=0,
        due_at=AT,
        state="sent",
        reason=None,
        claim_attempts=1,
        sent_at=AT,
        created_at=AT,
    )
    rows.insert(
        "outbox",
        idempotency_key=f"offer:{offer}:sms",
        kind="slot_alert",
        channel="sms",
        offer_id=offer,
        status="sent",
        attempts=1,
        created_at=AT,
        sent_at=AT,
    )


COUNT_COLUMNS = (
    "total_rows",
    "accepted",
    "rejected",
    "warnings",
    "new_clients",
    "updated_clients",
    "mrns_mapped",
    "needs_review",
    "queued_invitations",
)


def _rows_for_0004(rows: RowWriter) -> None:
    """Every table of 0004: 0003's rows and what 0004 added (a decided resend step, a
    provider's cadence and feed, a connection's windows, an offer viewed and declined, a slot
    reconciled, an interrupted batch with its heartbeat, a registrations import, a lease)."""
    _rows_for_0003(rows)
    provider = rows.insert(
        "providers",
        name="Cadence Practice",
        integrated=True,
        auto_invite=False,
        resend_cadence="3,7",
        feed_application="EPIC",
        feed_facility="LAKE",
    )
    location = rows.insert("locations", provider_id=provider, name="Harbour")
    client = rows.insert(
        "clients",
        provider_id=provider,
        client_ref="0099",
        first_name="Ana",
        last_name="Brook",
        date_of_birth=dt.date(1985, 7, 8),
        email="ana@example.org",
    )
    invitation = rows.insert(
        "invitations",
        client_id=client,
        provider_id=provider,
        location_id=location,
        status="Sent",
        send_count=1,
        attempt=1,
        messages_attempt=1,
    )
    rows.insert(
        "invitation_resends",
        invitation_id=invitation,
        step_days=3,
        state="queued",
        reason=None,
        as_of=dt.date(2026, 3, 4),
        created_at=AT,
    )
    rows.insert(
        "connections",
        provider_id=provider,
        location_id=location,
        client_id=client,
        first_name="Ana",
        last_name="Brook",
        date_of_birth=dt.date(1985, 7, 8),
        email="ana@example.org",
        name_key="brook|ana",
        status="Approved",
        mrn="0099",
        availability="Mon-Fri 08:00-12:00",
        created_at=AT,
    )
    for status, mode in (("interrupted", "sync"), ("completed", "registrations")):
        rows.insert(
            "import_batches",
            provider_name="Cadence Practice",
            location_name="Harbour",
            provider_id=provider,
            location_id=location,
            integrated=True,
            source="nightly.csv",
            mode=mode,
            strict=False,
            status=status,
            **dict.fromkeys(COUNT_COLUMNS, 0),
            worker_id="host:123",
            heartbeat_at=AT,
            started_at=AT,
        )


def _rows_for_0005(rows: RowWriter) -> None:
    """Every table of 0005: 0004's rows and what 0005 added (a settled fingerprint and a
    verification of a provider + location)."""
    _rows_for_0004(rows)
    provider = rows.insert("providers", name="Print Practice", integrated=True, auto_invite=False)
    location = rows.insert("locations", provider_id=provider, name="Quay")
    rows.insert_keyed(
        "roster_fingerprints",
        "row_hash",
        provider_id=provider,
        location_id=location,
        row_hash=-(2**62) + 7,
        client_id=12345,
        settled_on=dt.date(2026, 3, 2),
    )
    rows.insert_keyed(
        "roster_verifications",
        "provider_id",
        provider_id=provider,
        location_id=location,
        mode="sync",
        verified_at=LATER,
    )


# Keyed by revision id. Every revision but head needs one (test below); a writer stays forever.
ROW_WRITERS: dict[str, Callable[[RowWriter], None]] = {
    "0001": _rows_for_0001,
    "0002": _rows_for_0002,
    "0003": _rows_for_0003,
    "0004": _rows_for_0004,
    "0005": _rows_for_0005,
}


def test_every_earlier_revision_has_a_row_writer() -> None:
    revisions = [script.revision for script in _scripts()]
    missing = [revision for revision in revisions[:-1] if revision not in ROW_WRITERS]
    assert not missing, (
        f"revision(s) {missing} have no writer in ROW_WRITERS: write rows in every table they "
        "have, so that the survival test upgrades a database with data in it"
    )
    assert set(ROW_WRITERS) <= set(revisions), "a writer names a revision that does not exist"


# Revisions upgraded from with rows in them: every one with a writer, base first. While 0001 is
# also head, its run is an upgrade from head to head: the machinery runs before it has to.
SURVIVAL_REVISIONS = [s.revision for s in _scripts() if s.revision in ROW_WRITERS]
_SURVIVAL_SCHEMA = "openslots_migration_survival"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an empty database of each kind. PostgreSQL: a schema of its own in the test
    database (the `public` schema holds the migrated database the other tests share)."""
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path / 'old.db'}")
        return
    base = make_url(request.getfixturevalue("postgres_ready"))
    admin = get_engine(Settings(database_url=base.render_as_string(hide_password=False)))
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {_SURVIVAL_SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {_SURVIVAL_SCHEMA}"))
    url = base.update_query_dict({"options": f"-csearch_path={_SURVIVAL_SCHEMA}"})
    try:
        yield Settings(database_url=url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {_SURVIVAL_SCHEMA} CASCADE"))


def _comparable(value: Any) -> Any:
    """SQLite keeps no time zone: compare every timestamp as naive UTC, on both databases."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


@pytest.mark.parametrize("revision", SURVIVAL_REVISIONS)
def test_rows_written_at_an_earlier_revision_survive_the_upgrade_to_head(
    empty_database: Settings, revision: str
) -> None:
    assert upgrade_database(empty_database, revision) == revision
    engine = get_engine(empty_database)
    with engine.begin() as conn:
        rows = RowWriter(conn)
        ROW_WRITERS[revision](rows)
    tables = set(rows.tables.tables) - {"alembic_version"}
    assert {w.table for w in rows.written} == tables, f"the {revision} writer skips a table"

    head = _scripts()[-1].revision
    assert upgrade_database(empty_database) == head
    at_head = MetaData()
    with engine.connect() as conn:
        at_head.reflect(conn)
        for name in sorted(tables):
            written = [w for w in rows.written if w.table == name]
            count = conn.execute(select(func.count()).select_from(at_head.tables[name]))
            assert count.scalar_one() == len(written), f"{name}: rows lost or added"
        for row in rows.written:
            table: Table = at_head.tables[row.table]
            found = conn.execute(
                select(*(table.c[column] for column in row.values)).where(
                    table.c[row.key] == row.id
                )
            ).one()
            stored = {column: _comparable(value) for column, value in found._mapping.items()}
            expected = {column: _comparable(value) for column, value in row.values.items()}
            assert stored == expected, f"{row.table} row {row.id} changed in the upgrade"


def test_0002_derives_each_invitations_attempt_from_its_messages(empty_database: Settings) -> None:
    """Upgraded invitations owe nothing they already have messages for: a pending message of
    0001 keeps working (dispatch sends it) and is never materialised a second time."""
    assert upgrade_database(empty_database, "0001") == "0001"
    engine = get_engine(empty_database)
    with engine.begin() as conn:
        rows = RowWriter(conn)
        provider = rows.insert("providers", name="P", integrated=False, auto_invite=False)
        location = rows.insert("locations", provider_id=provider, name="L")
        invitations = {}
        for name, messages in {
            "resent": [("1", "email"), ("1", "sms"), ("2", "email"), ("2", "sms")],
            "sms-only resent": [("1", "sms"), ("2", "sms"), ("3", "sms")],
            "queued": [("1", "email")],
            "no messages": [],
        }.items():
            client = rows.insert(
                "clients",
                provider_id=provider,
                client_ref=name,
                first_name="A",
                last_name="B",
                date_of_birth=dt.date(1970, 1, 1),
                email=None,
            )
            invitation = rows.insert(
                "invitations",
                client_id=client,
                provider_id=provider,
                location_id=location,
                status="Queued",
                send_count=0,
            )
            invitations[name] = invitation
            for attempt, channel in messages:
                rows.insert(
                    "outbox",
                    idempotency_key=f"invite:{invitation}:{attempt}:{channel}",
                    kind="invitation",
                    channel=channel,
                    invitation_id=invitation,
                    status="pending",
                    attempts=0,
                )
    upgrade_database(empty_database)
    with engine.connect() as conn:
        found = dict(
            conn.execute(
                text("SELECT id, attempt || '/' || messages_attempt FROM invitations")
            ).all()
        )
    assert {name: found[i] for name, i in invitations.items()} == {
        "resent": "2/2",
        "sms-only resent": "3/3",
        "queued": "1/1",
        "no messages": "1/0",
    }


def test_0003_converts_slot_starts_and_statuses(
    empty_database: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start without an offset is wall time in OPENSLOTS_DEFAULT_TIMEZONE, one with an offset
    keeps it; `filled` is closed (booked in the EHR); an unreadable start keeps its row, closed
    and without an instant."""
    monkeypatch.setenv("OPENSLOTS_DEFAULT_TIMEZONE", "America/Chicago")
    assert upgrade_database(empty_database, "0002") == "0002"
    engine = get_engine(empty_database)
    with engine.begin() as conn:
        rows = RowWriter(conn)
        provider = rows.insert("providers", name="P", integrated=False, auto_invite=False)
        location = rows.insert("locations", provider_id=provider, name="L")
        ids = {}
        for name, start, status in [
            ("local", "202612031000", "open"),
            ("offset", "202612031000-0500", "open"),
            ("booked", "202612040830", "filled"),
            ("unreadable", "2026-12", "open"),
        ]:
            ids[name] = rows.insert(
                "slots",
                slot_key=name,
                provider_id=provider,
                location_id=location,
                filler_id=name,
                start=start,
                status=status,
            )
    upgrade_database(empty_database)
    with engine.connect() as conn:
        found = {
            row.id: (_comparable(row.starts_at), row.status, row.closed_reason)
            for row in conn.execute(text("SELECT id, starts_at, status, closed_reason FROM slots"))
        }
    if isinstance(found[ids["local"]][0], str):  # SQLite without type information
        with engine.connect() as conn:
            table = Table("slots", MetaData(), autoload_with=conn)
            found = {
                row.id: (_comparable(row.starts_at), row.status, row.closed_reason)
                for row in conn.execute(select(table))
            }
    assert {name: found[i] for name, i in ids.items()} == {
        "local": (dt.datetime(2026, 12, 3, 16, 0), "open", None),
        "offset": (dt.datetime(2026, 12, 3, 15, 0), "open", None),
        "booked": (dt.datetime(2026, 12, 4, 14, 30), "closed", "booked_in_ehr"),
        "unreadable": (None, "closed", "lead_time"),
    }


def test_0004_accepts_interrupted_batches_and_registrations_imports(
    empty_database: Settings,
) -> None:
    """0004 widens two CHECKs of import_batches (a table copy on SQLite): the new words are
    accepted, a word outside them is still refused, and the rows already there stay."""
    assert upgrade_database(empty_database, "0003") == "0003"
    engine = get_engine(empty_database)
    batch = dict(
        provider_name="P",
        location_name="L",
        integrated=False,
        source="roster.csv",
        strict=False,
        total_rows=0,
        accepted=0,
        rejected=0,
        warnings=0,
        new_clients=0,
        updated_clients=0,
        mrns_mapped=0,
        needs_review=0,
        queued_invitations=0,
    )
    with engine.begin() as conn:
        old = RowWriter(conn).insert("import_batches", mode="sync", status="running", **batch)
    upgrade_database(empty_database)
    with engine.begin() as conn:
        rows = RowWriter(conn)
        rows.insert("import_batches", mode="registrations", status="interrupted", **batch)
        kept = conn.execute(text("SELECT status FROM import_batches WHERE id = :id"), {"id": old})
        assert kept.scalar_one() == "running"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        RowWriter(conn).insert("import_batches", mode="sync", status="paused", **batch)


def test_0006_keeps_one_copy_of_each_stored_message_and_every_applied_one_survives(
    empty_database: Settings,
) -> None:
    """0006 makes an HL7 message's identity unique (non-empty control ids): copies an old
    database holds are resolved first. Of each identity's copies the first applied one stays
    (the lowest id when none was applied); the other copies go. Empty control ids are never
    duplicates, and a reused control id with other content is another message."""
    assert upgrade_database(empty_database, "0005") == "0005"
    engine = get_engine(empty_database)

    def message(control: str, digest: str, status: str) -> dict[str, Any]:
        return dict(
            sending_application="EPIC",
            sending_facility="NORTH",
            control_id=control,
            message_type="ADT^A04",
            content_hash=digest * 64,
            raw=f"MSH|{control}|{digest}".encode(),
            source="mllp",
            status=status,
            control_id_reused=False,
            received_at=AT,
        )

    with engine.begin() as conn:
        rows = RowWriter(conn)
        ids = {
            name: rows.insert("hl7_messages", **message(control, digest, status))
            for name, control, digest, status in (
                ("a_stored", "A", "a", "stored"),
                ("a_applied", "A", "a", "applied"),  # kept: the first applied copy
                ("a_error", "A", "a", "error"),
                ("b_first", "B", "b", "stored"),  # kept: none applied, the lowest id
                ("b_again", "B", "b", "applying"),
                ("b_other", "B", "c", "stored"),  # B reused with other content: kept
                ("c_applied", "C", "d", "applied"),  # kept
                ("c_applied_again", "C", "d", "applied"),
                ("empty_1", "", "e", "stored"),  # kept: no control id, never a duplicate
                ("empty_2", "", "e", "stored"),  # kept
            )
        }
    upgrade_database(empty_database)
    kept = {"a_applied", "b_first", "b_other", "c_applied", "empty_1", "empty_2"}
    with engine.connect() as conn:
        found = set(conn.execute(text("SELECT id FROM hl7_messages")).scalars())
        assert found == {ids[name] for name in kept}
        statuses = dict(conn.execute(text("SELECT id, status FROM hl7_messages")).all())
        assert statuses[ids["a_applied"]] == "applied"
    with pytest.raises(IntegrityError), engine.begin() as conn:
        RowWriter(conn).insert("hl7_messages", **message("B", "b", "stored"))
    with engine.begin() as conn:  # an empty control id still repeats freely
        RowWriter(conn).insert("hl7_messages", **message("", "e", "stored"))
