"""Settled rows (domain/fingerprints.py): a re-sync skips rows exactly as a completed import
applied them, and re-reads every one whose outcome could differ, so each import's result is
the same as reading every row (OPENSLOTS_ROSTER_SKIP_UNCHANGED=false), on both databases."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, update

from openslots.connectors.database.models import (
    Client,
    ImportRejection,
    Invitation,
    RosterFingerprint,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain import clock
from openslots.domain.fingerprints import SETTLED_DAYS
from openslots.domain.statuses import ConnectionStatus
from openslots.tasks.roster import ImportSummary, apply_roster, stage_roster, start_import
from tests.factories import connection, person, roster_file

PROVIDER, LOCATION = "Dr. Settled", "Main Street"
DAY0 = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
ROWS = 30


def run(path: Path, mode: str = "sync", location: str = LOCATION) -> tuple[ImportSummary, int]:
    """(the import's summary, rows it skipped as settled)."""
    start = start_import.fn(str(path), PROVIDER, location, mode, False, False)
    staged = stage_roster.fn(start.batch_id, str(path))
    return apply_roster.fn(start.batch_id, staged), staged.unchanged


def findings(db: Engine, batch_id: int) -> list[tuple[int, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(ImportRejection.line, ImportRejection.rule, ImportRejection.message)
            .where(ImportRejection.batch_id == batch_id)
            .order_by(ImportRejection.line, ImportRejection.rule)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def counts(summary: ImportSummary) -> tuple[int, ...]:
    return (
        summary.total_rows,
        summary.accepted,
        summary.rejected,
        summary.warnings,
        summary.new_clients,
        summary.updated_clients,
        summary.mrns_mapped,
        summary.needs_review,
        summary.queued_invitations,
    )


def rows(n: int = ROWS, **changes: list[str]) -> list[list[str]]:
    return [changes.get(str(i), person(i)) for i in range(1, n + 1)]


def test_an_unchanged_file_is_skipped_row_by_row_with_the_same_result(
    db: Engine, tmp_path: Path
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    first, skipped_first = run(path)
    again, skipped = run(path)
    assert skipped_first == 0 and first.new_clients == ROWS
    assert skipped == ROWS
    assert counts(again) == (ROWS, ROWS, 0, 0, 0, 0, 0, 0, 0)
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RosterFingerprint)).scalar() == ROWS


def test_a_changed_row_is_read_and_applied_and_only_it(db: Engine, tmp_path: Path) -> None:
    run(roster_file(tmp_path / "a.csv", rows()))
    changed = roster_file(tmp_path / "b.csv", rows(**{"7": person(7, last_name="Changed")}))
    summary, skipped = run(changed)
    assert skipped == ROWS - 1
    assert (summary.updated_clients, summary.accepted) == (1, ROWS)
    with db.connect() as conn:
        name = conn.execute(select(Client.last_name).where(Client.client_ref == "00007"))
        assert name.scalar_one() == "Changed"
    # Changed back: the old fingerprint went with the old values; the row is read again.
    back, skipped = run(roster_file(tmp_path / "c.csv", rows()))
    assert (skipped, back.updated_clients) == (ROWS - 1, 1)


def test_clients_sharing_email_and_birth_date_are_never_settled(db: Engine, tmp_path: Path) -> None:
    """Twins on one parent's email: a connection matching by email + date of birth could be
    either, so their rows are read at every import; the others are skipped."""
    twin = person(9, first_name="Twin", email="parent@example.org")
    sibling = person(10, first_name="Other", email="parent@example.org", date_of_birth=twin[3])
    path = roster_file(tmp_path / "a.csv", rows(**{"9": twin, "10": sibling}))
    run(path)
    again, skipped = run(path)
    assert skipped == ROWS - 2
    assert counts(again) == (ROWS, ROWS, 0, 0, 0, 0, 0, 0, 0)
    with db.connect() as conn:
        settled = conn.execute(
            select(Client.client_ref).join(
                RosterFingerprint, RosterFingerprint.client_id == Client.id
            )
        ).scalars()
        assert {"00009", "00010"}.isdisjoint(settled)


def test_a_duplicate_of_a_settled_row_is_rejected_as_when_every_row_is_read(
    db: Engine, tmp_path: Path
) -> None:
    run(roster_file(tmp_path / "a.csv", rows()))
    # Line 2 is client 1 (settled); an identical copy at the end, then a new row with client
    # 2's Client ID, then a new client with client 3's email + birth date + first name.
    extra = [person(1), person(90, client_id="00002"), person(91, **_same_person(3))]
    summary, skipped = run(roster_file(tmp_path / "b.csv", rows() + extra))
    assert skipped == ROWS - 3
    assert (summary.rejected, summary.accepted) == (3, ROWS)
    assert [(line, rule) for line, rule, _ in findings(db, summary.batch_id)] == [
        (ROWS + 2, "duplicate_client_id"),
        (ROWS + 3, "duplicate_client_id"),
        (ROWS + 4, "duplicate_person"),
    ]
    assert "line 2" in findings(db, summary.batch_id)[0][2]


def _same_person(n: int) -> dict[str, str]:
    row = person(n)
    return {"first_name": row[1], "date_of_birth": row[3], "email": row[4]}


def test_a_connection_made_since_the_last_import_reopens_the_rows_it_matches(
    db: Engine, tmp_path: Path
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    with clock.frozen_clock(DAY0) as frozen:
        run(path)
        frozen.advance(dt.timedelta(hours=20))
        connection(db, PROVIDER, LOCATION, person(4))  # by email + date of birth
        frozen.advance(dt.timedelta(hours=4))
        summary, skipped = run(path)
    assert summary.mrns_mapped == 1 and skipped < ROWS
    with db.connect() as conn:
        mrn = conn.execute(select(ConnectionRow.mrn)).scalar_one()
    assert mrn == "00004"


def test_invite_mode_rejects_a_settled_client_whose_connection_was_approved_since(
    db: Engine, tmp_path: Path
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    with clock.frozen_clock(DAY0) as frozen:
        first, _ = run(path, mode="invite")
        connection_id = connection(db, PROVIDER, LOCATION, person(9))
        run(path, mode="invite")  # maps the MRN; still Pending
        frozen.advance(dt.timedelta(days=1))
        with db.begin() as conn:
            conn.execute(
                update(ConnectionRow)
                .where(ConnectionRow.id == connection_id)
                .values(status=ConnectionStatus.APPROVED, updated_at=clock.now())
            )
        frozen.advance(dt.timedelta(days=1))
        summary, _ = run(path, mode="invite")
        frozen.advance(dt.timedelta(days=1))
        again, _ = run(path, mode="invite")  # nothing changed since: rejected again all the same
    assert first.queued_invitations == ROWS
    for batch in (summary, again):
        assert [(line, rule) for line, rule, _ in findings(db, batch.batch_id)] == [
            (10, "approved_connection_exists")
        ]


def test_a_settled_row_that_becomes_ambiguous_is_held_for_review_at_every_import(
    db: Engine, tmp_path: Path
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    with clock.frozen_clock(DAY0) as frozen:
        run(path)
        frozen.advance(dt.timedelta(days=1))
        # Two people (other emails) with row 12's name and birth date: the match is ambiguous.
        row = person(12)
        for email in ("one@example.org", "two@example.org"):
            connection(db, PROVIDER, LOCATION, [*row[:4], email, *row[5:]])
        reviewed = []
        for _ in range(2):
            frozen.advance(dt.timedelta(days=1))
            summary, _ = run(path)
            reviewed.append(
                (summary.needs_review, [r for _, r, _ in findings(db, summary.batch_id)])
            )
    assert reviewed == [(1, ["ambiguous_match"])] * 2


def test_rows_with_a_warning_are_never_settled_and_warn_every_time(
    db: Engine, tmp_path: Path
) -> None:
    path = roster_file(tmp_path / "r.csv", rows(**{"5": person(5, mobile_phone="12")}))
    first, _ = run(path)
    again, skipped = run(path)
    assert first.warnings == again.warnings == 1
    assert skipped == ROWS - 1
    assert [(line, rule) for line, rule, _ in findings(db, again.batch_id)] == [
        (6, "mobile_number")
    ]


def test_a_client_changed_by_another_location_is_read_again_and_restored(
    db: Engine, tmp_path: Path
) -> None:
    run(roster_file(tmp_path / "main.csv", rows()))
    other = rows(**{"3": person(3, last_name="Elsewhere")})
    moved, skipped_other = run(roster_file(tmp_path / "east.csv", other), location="East")
    assert skipped_other == 0  # another location: nothing settled there yet
    assert moved.queued_invitations == ROWS  # one invitation per client x location
    summary, skipped = run(roster_file(tmp_path / "main2.csv", rows()))
    assert (skipped, summary.updated_clients) == (ROWS - 1, 1)
    with db.connect() as conn:
        name = conn.execute(select(Client.last_name).where(Client.client_ref == "00003"))
        assert name.scalar_one() == "Example"


def test_a_fingerprint_is_trusted_for_a_year_at_most(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    with clock.frozen_clock(DAY0) as frozen:
        run(path)
        frozen.advance(dt.timedelta(days=SETTLED_DAYS))
        _, within = run(path)  # re-reads nothing, and settles nothing anew
        frozen.advance(dt.timedelta(days=1))
        summary, expired = run(path)
        frozen.advance(dt.timedelta(days=1))
        _, renewed = run(path)
    assert (within, expired, renewed) == (ROWS, 0, ROWS)
    assert counts(summary) == (ROWS, ROWS, 0, 0, 0, 0, 0, 0, 0)


def test_another_region_or_mode_reads_every_row(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    run(path, mode="sync")
    assert run(path, mode="invite")[1] == 0
    monkeypatch.setenv("OPENSLOTS_PHONE_REGION", "CA")
    assert run(path, mode="sync")[1] == 0


def test_skipping_can_be_turned_off(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = roster_file(tmp_path / "r.csv", rows())
    run(path)
    monkeypatch.setenv("OPENSLOTS_ROSTER_SKIP_UNCHANGED", "false")
    summary, skipped = run(path)
    assert skipped == 0 and counts(summary) == (ROWS, ROWS, 0, 0, 0, 0, 0, 0, 0)


def test_a_client_without_an_invitation_at_the_location_is_not_settled(
    db: Engine, tmp_path: Path
) -> None:
    """An opted-out client is not invited; were the opt-out lifted, the next import must
    invite it, so its row is read every time."""
    from openslots.connectors.database.models import Channel, OptOut

    run(roster_file(tmp_path / "a.csv", rows(2)))
    with db.begin() as conn:
        provider_id = conn.execute(select(Client.provider_id)).scalars().first()
        conn.execute(
            insert(OptOut),
            [
                {
                    "provider_id": provider_id,
                    "channel": Channel.EMAIL,
                    "address": "client3@example.org",
                },
                {"provider_id": provider_id, "channel": Channel.SMS, "address": "+14155550003"},
            ],
        )
    path = roster_file(tmp_path / "b.csv", rows(3))
    added, _ = run(path)
    _, skipped = run(path)
    assert added.queued_invitations == 0 and skipped == 2
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Invitation)).scalar() == 2


def test_a_new_row_claiming_the_connection_of_a_settled_row_holds_both_for_review(
    db: Engine, tmp_path: Path
) -> None:
    """Row 6 (settled) holds connection K's MRN; a new row with K's name and birth date but
    another Client ID and email claims K too: both rows go to review, as when all are read."""
    original = rows()
    with clock.frozen_clock(DAY0) as frozen:
        k = person(6)
        connection(db, PROVIDER, LOCATION, k, mrn="00006")
        run(roster_file(tmp_path / "a.csv", original))
        frozen.advance(dt.timedelta(days=1))
        run(roster_file(tmp_path / "a.csv", original))  # K unchanged since: row 6 settled
        frozen.advance(dt.timedelta(days=1))
        claimant = person(77, first_name=k[1], last_name=k[2], date_of_birth=k[3])
        summary, _ = run(roster_file(tmp_path / "b.csv", [*original, claimant]))
    assert [(line, rule) for line, rule, _ in findings(db, summary.batch_id)] == [
        (7, "shared_connection"),
        (ROWS + 2, "shared_connection"),
    ]
