"""A nightly re-sync writes only what changed: no client or invitation row of an unchanged
roster row is written or locked (PostgreSQL: xmin/xmax; both databases: updated_at and
last_batch_id, the import's own audit).

Each test runs twice: with unchanged rows skipped as they are read (fingerprints, the default)
and with every row read, staged and compared in SQL (OPENSLOTS_ROSTER_SKIP_UNCHANGED=false):
both paths must write exactly the same rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from openslots.connectors.database.models import Client, Invitation
from openslots.domain import clock
from openslots.tasks.roster import ImportSummary, apply_roster, stage_roster, start_import
from tests.factories import person, roster_file

PROVIDER, LOCATION = "Dr. Resync", "Main Street"
DAY0 = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
ROWS = 40


@pytest.fixture(autouse=True, params=["skip-unchanged", "read-every-row"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "read-every-row":
        monkeypatch.setenv("OPENSLOTS_ROSTER_SKIP_UNCHANGED", "false")
    return str(request.param)


def sync(path: Path) -> ImportSummary:
    start = start_import.fn(str(path), PROVIDER, LOCATION, "sync", False, False)
    return apply_roster.fn(start.batch_id, stage_roster.fn(start.batch_id, str(path)))


def client_audit(db: Engine) -> dict[str, tuple[object, ...]]:
    """Client ID -> (updated_at, last_batch_id[, xmin, xmax on PostgreSQL])."""
    versions = ", xmin::text, xmax::text" if db.dialect.name == "postgresql" else ""
    with db.connect() as conn:
        rows = conn.execute(
            text(f"SELECT client_ref, updated_at, last_batch_id{versions} FROM clients")
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def invitation_audit(db: Engine) -> dict[int, tuple[object, ...]]:
    versions = ", xmin::text, xmax::text" if db.dialect.name == "postgresql" else ""
    with db.connect() as conn:
        rows = conn.execute(text(f"SELECT client_id, updated_at{versions} FROM invitations"))
        return {row[0]: tuple(row[1:]) for row in rows}


def written(before: dict, after: dict) -> set:
    return {key for key, value in after.items() if before.get(key) != value}


def test_an_unchanged_resync_writes_no_row(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(n) for n in range(1, ROWS + 1)])
    with clock.frozen_clock(DAY0) as frozen:
        first = sync(path)
        clients, invitations = client_audit(db), invitation_audit(db)
        frozen.advance(dt.timedelta(days=1))
        again = sync(path)
    assert (first.new_clients, first.queued_invitations) == (ROWS, ROWS)
    assert (again.accepted, again.rejected, again.total_rows) == (ROWS, 0, ROWS)
    assert (again.new_clients, again.updated_clients, again.queued_invitations) == (0, 0, 0)
    # On PostgreSQL the same xmax too: not locked either (ON CONFLICT DO UPDATE ... WHERE
    # false still locks the row, a write of its page and of WAL).
    assert written(clients, client_audit(db)) == set()
    assert written(invitations, invitation_audit(db)) == set()


def test_one_changed_row_in_a_hundred_writes_exactly_that_row(db: Engine, tmp_path: Path) -> None:
    rows = [person(n) for n in range(1, 101)]
    changed = [person(n, last_name="Changed") if n == 37 else person(n) for n in range(1, 101)]
    with clock.frozen_clock(DAY0) as frozen:
        sync(roster_file(tmp_path / "a.csv", rows))
        before = client_audit(db)
        frozen.advance(dt.timedelta(days=1))
        summary = sync(roster_file(tmp_path / "b.csv", changed))
    after = client_audit(db)
    assert (summary.new_clients, summary.updated_clients, summary.queued_invitations) == (0, 1, 0)
    assert written(before, after) == {"00037"}
    updated_at, last_batch = after["00037"][:2]
    assert last_batch == summary.batch_id
    assert clock_value(updated_at) == DAY0 + dt.timedelta(days=1)
    with db.connect() as conn:
        name = conn.execute(select(Client.last_name).where(Client.client_ref == "00037"))
        assert name.scalar_one() == "Changed"


def test_a_row_changed_back_is_written_again_and_only_it(db: Engine, tmp_path: Path) -> None:
    original = roster_file(tmp_path / "a.csv", [person(n) for n in range(1, ROWS + 1)])
    changed = roster_file(
        tmp_path / "b.csv",
        [person(n, mobile_phone="") if n == 5 else person(n) for n in range(1, ROWS + 1)],
    )
    with clock.frozen_clock(DAY0) as frozen:
        sync(original)
        frozen.advance(dt.timedelta(days=1))
        sync(changed)
        before = client_audit(db)
        frozen.advance(dt.timedelta(days=1))
        back = sync(original)
    assert (back.new_clients, back.updated_clients) == (0, 1)
    assert written(before, client_audit(db)) == {"00005"}
    with db.connect() as conn:
        phone = conn.execute(select(Client.mobile_phone).where(Client.client_ref == "00005"))
        assert phone.scalar_one() == "+14155550005"


def test_a_resync_with_a_new_row_invites_only_the_new_client(db: Engine, tmp_path: Path) -> None:
    with clock.frozen_clock(DAY0) as frozen:
        sync(roster_file(tmp_path / "a.csv", [person(n) for n in range(1, ROWS + 1)]))
        invitations = invitation_audit(db)
        frozen.advance(dt.timedelta(days=1))
        summary = sync(roster_file(tmp_path / "b.csv", [person(n) for n in range(1, ROWS + 2)]))
    assert (summary.new_clients, summary.updated_clients, summary.queued_invitations) == (1, 0, 1)
    after = invitation_audit(db)
    with db.connect() as conn:
        new_id = conn.execute(
            select(Client.id).where(Client.client_ref == f"{ROWS + 1:05d}")
        ).scalar_one()
        assert conn.execute(
            select(Invitation.status).where(Invitation.client_id == new_id)
        ).scalar_one() == ("Queued")
    assert written(invitations, after) == {new_id}


def clock_value(value: object) -> dt.datetime:
    """A stored timestamp as an aware instant (SQLite stores naive UTC, maybe as text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
