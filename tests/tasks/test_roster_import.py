"""The roster import steps on SQLite and PostgreSQL (task functions, no Prefect server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from openslots.connectors.database.models import (
    Client,
    ImportBatch,
    ImportRejection,
    Invitation,
    OptOut,
    OutboxMessage,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.messages import invitation_key
from openslots.domain.statuses import ConnectionStatus
from openslots.errors import RosterFileError, RosterRejectedError
from openslots.tasks.dispatch import materialise_intents
from openslots.tasks.roster import ImportSummary, apply_roster, stage_roster, start_import
from tests.factories import HEADER, connection, person, roster_file
from tests.tasks._dispatch import dispatch_now

PROVIDER, LOCATION = "Dr. Test Provider", "Main Street"


def run_import(
    path: Path,
    mode: str = "invite",
    strict: bool = False,
    integrated: bool = False,
    location: str = LOCATION,
) -> ImportSummary:
    start = start_import.fn(str(path), PROVIDER, location, mode, strict, integrated)
    staged = stage_roster.fn(start.batch_id, str(path))
    return apply_roster.fn(start.batch_id, staged)


def count(db: Engine, model) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def rejections(db: Engine, batch_id: int, severity: str = "error") -> set[tuple[int, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(ImportRejection.line, ImportRejection.field, ImportRejection.rule).where(
                ImportRejection.batch_id == batch_id, ImportRejection.severity == severity
            )
        ).all()
    return {tuple(r) for r in rows}


def test_counts_add_up_and_invitations_are_queued_as_intents(db: Engine, tmp_path: Path) -> None:
    rows = [person(n) for n in range(1, 6)] + [
        person(6, email="broken"),
        person(7, mobile_phone=""),
    ]
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    assert summary.total_rows == 7
    assert summary.accepted + summary.rejected == summary.total_rows
    assert (summary.accepted, summary.rejected, summary.new_clients) == (6, 1, 6)
    assert summary.queued_invitations == 6
    assert count(db, Client) == 6 and count(db, Invitation) == 6
    assert count(db, OutboxMessage) == 0  # messages are the dispatch flow's to write
    with db.connect() as conn:
        owed = conn.execute(
            select(Invitation.status, Invitation.attempt, Invitation.messages_attempt).distinct()
        ).all()
        staged = conn.execute(text("SELECT count(*) FROM roster_staging")).scalar_one()
        batch = conn.execute(select(ImportBatch.status, ImportBatch.accepted)).one()
    assert [tuple(row) for row in owed] == [("Queued", 1, 0)]
    assert staged == 0  # staging is emptied after apply
    assert tuple(batch) == ("completed", 6)
    # A dispatch afterwards sends what the import owes, once.
    assert dispatch_now().by_channel == {"email": 6, "sms": 5}  # person 7 has no phone
    assert dispatch_now().claimed == 0
    with db.connect() as conn:
        channels = conn.execute(
            select(OutboxMessage.channel, func.count()).group_by(OutboxMessage.channel)
        ).all()
    assert dict(channels) == {"email": 6, "sms": 5}


def test_materialised_messages_carry_the_key_the_domain_defines(db: Engine, tmp_path: Path) -> None:
    # Dispatch builds its keys in SQL, the domain in Python: both must write one format.
    run_import(roster_file(tmp_path / "r.csv", [person(1), person(2, mobile_phone="")]))
    materialise_intents.fn()
    with db.connect() as conn:
        rows = conn.execute(
            select(
                OutboxMessage.idempotency_key,
                OutboxMessage.invitation_id,
                OutboxMessage.channel,
                Client.client_ref,
            )
            .join(Invitation, Invitation.id == OutboxMessage.invitation_id)
            .join(Client, Client.id == Invitation.client_id)
        ).all()
    first = next(i for _, i, _, ref in rows if ref == "00001")
    second = next(i for _, i, _, ref in rows if ref == "00002")
    keys = {key for key, _, _, _ in rows}
    assert keys == {f"invite:{first}:1:email", f"invite:{first}:1:sms", f"invite:{second}:1:email"}
    assert keys == {invitation_key(i, 1, channel) for _, i, channel, _ in rows}


def test_reimporting_the_same_file_changes_and_queues_nothing(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(n) for n in range(1, 4)])
    first = run_import(path)
    second = run_import(path)
    assert first.queued_invitations == 3
    assert (second.new_clients, second.updated_clients, second.queued_invitations) == (0, 0, 0)
    assert count(db, Invitation) == 3 and count(db, OutboxMessage) == 0
    assert dispatch_now().materialised == 6


def test_changed_details_update_the_client(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "a.csv", [person(1), person(2)]))
    summary = run_import(roster_file(tmp_path / "b.csv", [person(1, mobile_phone=""), person(2)]))
    assert (summary.new_clients, summary.updated_clients) == (0, 1)
    with db.connect() as conn:
        phone = conn.execute(select(Client.mobile_phone).where(Client.client_ref == "00001"))
        assert phone.scalar_one() is None


def test_duplicates_in_the_file_keep_the_first_and_name_its_line(
    db: Engine, tmp_path: Path
) -> None:
    rows = [
        person(1),
        person(2),
        person(1, email="other@example.org"),  # same Client ID as line 2
        person(9, client_id="X9", first_name=person(2)[1]),  # same email+DOB+first name? no
        person(2, client_id="Y2"),  # same email + DOB + first name as line 3
    ]
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    assert rejections(db, summary.batch_id) == {
        (4, "client_id", "duplicate_client_id"),
        (6, "email", "duplicate_person"),
    }
    with db.connect() as conn:
        messages = conn.execute(select(ImportRejection.line, ImportRejection.message)).all()
    assert "line 2" in dict(messages)[4] and "line 3" in dict(messages)[6]
    assert summary.accepted == 3 and summary.total_rows == 5


def test_invite_mode_rejects_clients_already_approved(db: Engine, tmp_path: Path) -> None:
    rows = [person(1), person(2)]
    connection(db, PROVIDER, LOCATION, rows[0], status=ConnectionStatus.APPROVED)
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    assert rejections(db, summary.batch_id) == {(2, "client_id", "approved_connection_exists")}
    assert (summary.accepted, summary.rejected, summary.queued_invitations) == (1, 1, 1)
    with db.connect() as conn:
        message = conn.execute(select(ImportRejection.message)).scalar_one()
    assert "already exists as an Approved Connection" in message


def test_sync_mode_maps_approved_clients_instead_and_queues_no_invitation(
    db: Engine, tmp_path: Path
) -> None:
    rows = [person(1), person(2)]
    approved = connection(
        db, PROVIDER, LOCATION, rows[0], status=ConnectionStatus.APPROVED, integrated=True
    )
    summary = run_import(roster_file(tmp_path / "r.csv", rows), mode="sync")
    assert (summary.accepted, summary.rejected, summary.mrns_mapped) == (2, 0, 1)
    assert summary.queued_invitations == 1  # only the client without a connection
    with db.connect() as conn:
        mrn, client_id = conn.execute(
            select(ConnectionRow.mrn, ConnectionRow.client_id).where(ConnectionRow.id == approved)
        ).one()
        client = conn.execute(select(Client.id).where(Client.client_ref == "00001")).scalar_one()
    assert (mrn, client_id) == ("00001", client)


def test_mrn_mapping_tiers_conflicts_and_ambiguity(db: Engine, tmp_path: Path) -> None:
    rows = [person(n) for n in range(1, 6)]
    by_mrn = connection(
        db, PROVIDER, LOCATION, person(99, date_of_birth="1999-09-09"), mrn="00001"
    )  # tier 1: MRN equals Client ID, other details differ
    by_email = connection(db, PROVIDER, LOCATION, rows[1])  # tier 2: email + DOB
    by_name = connection(db, PROVIDER, LOCATION, person(3, email="other@example.org"))  # tier 3
    conflict = connection(db, PROVIDER, LOCATION, rows[3], mrn="SOMETHING-ELSE")
    # Two different people share row 6's name and DOB: never guessed.
    twin_a = connection(db, PROVIDER, LOCATION, person(5, email="a@example.org"))
    twin_b = connection(db, PROVIDER, LOCATION, person(5, email="b@example.org"))
    summary = run_import(roster_file(tmp_path / "r.csv", rows), mode="sync")
    assert summary.mrns_mapped == 2 and summary.needs_review == 2
    assert rejections(db, summary.batch_id, "review") == {
        (5, "client_id", "mrn_conflict"),
        (6, "client_id", "ambiguous_match"),
    }
    with db.connect() as conn:
        mrns = dict(conn.execute(select(ConnectionRow.id, ConnectionRow.mrn)).all())
    assert mrns == {
        by_mrn: "00001",
        by_email: "00002",
        by_name: "00003",
        conflict: "SOMETHING-ELSE",
        twin_a: None,
        twin_b: None,
    }
    assert summary.accepted == 5  # review rows are accepted clients, only the MRN waits


def test_strict_mode_writes_nothing_when_a_row_is_rejected(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1), person(2, date_of_birth="31/12/1990")])
    with pytest.raises(RosterRejectedError) as error:
        run_import(path, strict=True)
    assert (error.value.rejected, error.value.total_rows) == (1, 2)
    assert count(db, Client) == 0 and count(db, Invitation) == 0 and count(db, OutboxMessage) == 0
    assert rejections(db, error.value.batch_id) == {(3, "date_of_birth", "date_format")}
    with db.connect() as conn:
        assert conn.execute(select(ImportBatch.status)).scalar_one() == "failed"
    ok = run_import(roster_file(tmp_path / "ok.csv", [person(1)]), strict=True)
    assert ok.accepted == 1


def test_opted_out_contacts_are_not_invited(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "seed.csv", [person(50)]))  # creates the provider
    with db.begin() as conn:
        conn.execute(
            OptOut.__table__.insert(),
            [
                {"provider_id": 1, "channel": "email", "address": "client1@example.org"},
                {"provider_id": 1, "channel": "sms", "address": "+14155550002"},
            ],
        )
    rows = [
        person(1, email="CLIENT1@example.org"),
        person(2, mobile_phone="415.555.0002"),
        person(3),
    ]
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    assert summary.accepted == 3 and summary.queued_invitations == 1


def test_a_new_location_gets_its_own_invitation(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1)])
    run_import(path)
    second = run_import(path, location="Second Site")
    assert second.queued_invitations == 1 and count(db, Invitation) == 2


def test_a_file_missing_a_column_fails_and_writes_nothing(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1)[:3]], header=HEADER[:3])
    with pytest.raises(RosterFileError, match="date_of_birth"):
        run_import(path)
    assert count(db, Client) == 0
    with db.connect() as conn:
        status, error = conn.execute(select(ImportBatch.status, ImportBatch.error)).one()
    assert status == "failed" and "required column missing" in error


def test_chunks_stream_through_staging(db: Engine, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENSLOTS_CHUNK_SIZE", "7")
    rows = [person(n) for n in range(1, 51)] + [person(51, email="bad"), person(3)]
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    assert (summary.total_rows, summary.accepted, summary.rejected) == (52, 50, 2)
    assert rejections(db, summary.batch_id) == {
        (52, "email", "email_format"),
        (53, "client_id", "duplicate_client_id"),
    }


def test_duplicate_chains_always_point_at_a_kept_row(db: Engine, tmp_path: Path) -> None:
    rows = [
        person(1, client_id="A1", first_name="Ann"),
        person(1, client_id="A2", first_name="Ann"),  # same person as line 2
        person(3, client_id="A2", first_name="Bob"),  # same Client ID as line 3 (rejected)
    ]
    summary = run_import(roster_file(tmp_path / "r.csv", rows))
    # Line 3 repeats line 2's person; once it is rejected, line 4's Client ID A2 is free.
    assert rejections(db, summary.batch_id) == {(3, "email", "duplicate_person")}
    with db.connect() as conn:
        message = conn.execute(select(ImportRejection.message)).scalar_one()
        refs = set(conn.execute(select(Client.client_ref)).scalars())
    assert "line 2" in message
    assert refs == {"A1", "A2"}
    assert (summary.accepted, summary.rejected) == (2, 1)


def test_ambiguous_match_with_an_approved_connection_is_reviewed_not_guessed(
    db: Engine, tmp_path: Path
) -> None:
    row = person(1, first_name="Ann", last_name="Lee", email="third@example.org")
    connection(
        db,
        PROVIDER,
        LOCATION,
        person(1, first_name="Ann", last_name="Lee", email="one@example.org"),
        status=ConnectionStatus.APPROVED,
    )
    connection(
        db,
        PROVIDER,
        LOCATION,
        person(1, first_name="Ann", last_name="Lee", email="two@example.org"),
    )
    for mode in ("invite", "sync"):
        summary = run_import(roster_file(tmp_path / f"{mode}.csv", [row]), mode=mode)
        assert (summary.accepted, summary.rejected, summary.needs_review) == (1, 0, 1), mode
        assert rejections(db, summary.batch_id, "review") == {(2, "client_id", "ambiguous_match")}
        assert summary.queued_invitations == 0 and summary.mrns_mapped == 0


def test_non_ascii_names_match_the_same_on_every_database(db: Engine, tmp_path: Path) -> None:
    registered = person(1, first_name="Émilie", last_name="José", email="other@example.org")
    cid = connection(db, PROVIDER, LOCATION, registered)
    rows = [
        person(1, first_name="ÉMILIE", last_name="JOSÉ"),  # tier 3: name + DOB, any case
        person(2, client_id="X2", first_name="Łucja", email="l@example.org"),
        person(2, client_id="X3", first_name="łUCJA", email="l@example.org"),  # same person
    ]
    summary = run_import(roster_file(tmp_path / "r.csv", rows), mode="sync")
    assert summary.mrns_mapped == 1
    assert rejections(db, summary.batch_id) == {(4, "email", "duplicate_person")}
    with db.connect() as conn:
        assert (
            conn.execute(select(ConnectionRow.mrn).where(ConnectionRow.id == cid)).scalar_one()
            == "00001"
        )


def test_a_failed_strict_import_leaves_no_provider_behind(db: Engine, tmp_path: Path) -> None:
    from openslots.connectors.database.models import Location, Provider

    path = roster_file(tmp_path / "r.csv", [person(1, email="x")])
    with pytest.raises(RosterRejectedError):
        run_import(path, strict=True)
    assert count(db, Provider) == 0 and count(db, Location) == 0


def test_sync_reimport_with_approved_connections_changes_nothing(
    db: Engine, tmp_path: Path
) -> None:
    rows = [person(1), person(2)]
    connection(db, PROVIDER, LOCATION, rows[0], status=ConnectionStatus.APPROVED)
    path = roster_file(tmp_path / "r.csv", rows)
    first = run_import(path, mode="sync")
    second = run_import(path, mode="sync")
    assert (first.mrns_mapped, first.queued_invitations) == (1, 1)
    assert (
        second.new_clients,
        second.updated_clients,
        second.mrns_mapped,
        second.queued_invitations,
        second.needs_review,
    ) == (0, 0, 0, 0, 0)
