"""The seed's connection and invitation lifecycle on SQLite and PostgreSQL."""

from __future__ import annotations

import email
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from openslots.api import InvalidRegistration, register_from_app
from openslots.connectors.database import lifecycle as life
from openslots.connectors.database import opt_outs
from openslots.connectors.database.eligibility import eligible_connection_ids
from openslots.connectors.database.listings import audit_events, list_invitations
from openslots.connectors.database.models import (
    Channel,
    Invitation,
    OutboxMessage,
    OutboxStatus,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.domain.statuses import ConnectionStatus
from tests.factories import HEADER, person, roster_file
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_roster_import import LOCATION, PROVIDER, run_import

GUARDIAN_HEADER = [*HEADER, "Guardian First Name", "Guardian Last Name"]


def invitation_status(db: Engine, invitation_id: int = 1) -> str:
    with db.connect() as conn:
        return conn.execute(
            select(Invitation.status).where(Invitation.id == invitation_id)
        ).scalar_one()


def connections(db: Engine) -> list[tuple]:
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    ConnectionRow.id,
                    ConnectionRow.status,
                    ConnectionRow.mrn,
                    ConnectionRow.first_name,
                ).order_by(ConnectionRow.id)
            )
        ]


def invited(db: Engine, tmp_path: Path, rows: list[list[str]], header=None) -> None:
    run_import(roster_file(tmp_path / "r.csv", rows, header=header), integrated=True)
    dispatch_now()


def test_dob_match_approves_at_once_and_connects(db: Engine, tmp_path: Path) -> None:
    invited(db, tmp_path, [person(1)])
    assert invitation_status(db) == "Sent"
    result = register_from_app(
        email="  CLIENT1@Example.org ",
        date_of_birth=person(1)[3],
        first_name="Whatever",
        last_name="Name",
        provider=PROVIDER,
        location=LOCATION,
    )
    assert result["outcome"] == "dob_match" and result["pending_connection"] is None
    assert invitation_status(db) == "Connected"
    assert connections(db) == [(1, "Approved", "00001", person(1)[1])]
    with db.connect() as conn:
        assert eligible_connection_ids(conn) == {1}  # integrated: Approved and has an MRN
        trail = audit_events(conn, "invitation", 1)
    assert [(e["from"], e["to"], e["reason"]) for e in trail] == [
        ("Sent", "Connected", "date of birth match")
    ]


def test_dob_match_for_a_dependent_and_the_guardian_shows_new(db: Engine, tmp_path: Path) -> None:
    guardian_email = "parent@example.org"
    rows = [
        [*person(1, email=guardian_email, date_of_birth="2016-05-05"), "Gina", "Parent"],
        [
            *person(
                2,
                email=guardian_email,
                first_name="Gina",
                last_name="Parent",
                date_of_birth="1985-03-03",
            ),
            "",
            "",
        ],
    ]
    invited(db, tmp_path, rows, header=GUARDIAN_HEADER)
    result = register_from_app(
        email=guardian_email,
        date_of_birth="1985-03-04",  # no match
        first_name="Gina",
        last_name="Parent",
        dependent_first_name=rows[0][1],
        dependent_last_name="Example",
        dependent_date_of_birth="2016-05-05",
    )
    assert result["outcome"] == "dob_match"
    assert (invitation_status(db, 1), invitation_status(db, 2)) == ("Connected", "New")
    with db.begin() as conn, pytest.raises(life.LifecycleError, match="already Connected"):
        life.resend(conn, 2, "tester")


def test_registered_then_requested_then_accepted(db: Engine, tmp_path: Path) -> None:
    invited(db, tmp_path, [person(1)])
    result = register_from_app(
        email="client1@example.org",
        date_of_birth="1999-12-31",
        first_name="Test",
        last_name="Example",
    )
    assert result["outcome"] == "registered"
    assert invitation_status(db) == "Registered" and connections(db) == []
    with db.begin() as conn:
        life.request_connection(conn, 1, "tester")
    assert invitation_status(db) == "Invited"
    with db.begin() as conn, pytest.raises(life.LifecycleError, match="Registered"):
        life.request_connection(conn, 1, "tester")
    with db.begin() as conn:
        life.accept_request(conn, 1)
    assert invitation_status(db) == "Connected"
    assert connections(db) == [(1, "Approved", "00001", person(1)[1])]


def test_request_from_the_app_without_a_match_arrives_pending(db: Engine, tmp_path: Path) -> None:
    invited(db, tmp_path, [person(1)])
    result = register_from_app(
        email="stranger@example.org",
        date_of_birth="1970-01-01",
        first_name="New",
        last_name="Person",
        provider=PROVIDER,
        location=LOCATION,
    )
    assert result["outcome"] == "pending_request"
    assert connections(db) == [(1, "Pending", None, "New")]
    with db.connect() as conn:
        assert eligible_connection_ids(conn) == set()
    again = register_from_app(
        email="stranger@example.org",
        date_of_birth="1970-01-01",
        first_name="New",
        last_name="Person",
        provider=PROVIDER,
        location=LOCATION,
    )
    assert again["pending_connection"] == 1 and len(connections(db)) == 1  # no duplicate


def test_invalid_registration_names_fields_not_values(db: Engine) -> None:
    with pytest.raises(InvalidRegistration) as error:
        register_from_app(
            email="bad",
            date_of_birth="02/03/1990",
            first_name="A",
            last_name="B",
            provider="Only Provider",
        )
    rules = {(r["field"], r["rule"]) for r in error.value.rejections}
    assert rules == {
        ("email", "email_format"),
        ("date_of_birth", "date_format"),
        ("location", "provider_and_location"),
    }
    assert "02/03/1990" not in str(error.value)
    assert {r["line"] for r in error.value.rejections} == {1}
    assert (error.value.line, error.value.field, error.value.rule) == (
        1,
        *next((r["field"], r["rule"]) for r in error.value.rejections),
    )


def test_a_registration_for_an_unknown_provider_names_line_field_and_rule(db: Engine) -> None:
    with pytest.raises(InvalidRegistration) as error:
        register_from_app(
            email="someone@example.org",
            date_of_birth="1990-02-03",
            first_name="A",
            last_name="B",
            provider="Nobody",
            location="Nowhere",
        )
    assert (error.value.line, error.value.field, error.value.rule) == (
        1,
        "provider",
        "unknown_provider_or_location",
    )


def test_resend_rules(db: Engine, tmp_path: Path) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    with db.begin() as conn, pytest.raises(life.LifecycleError, match="still queued"):
        life.resend(conn, 1, "tester")
    dispatch_now()
    with db.begin() as conn:
        assert life.resend(conn, 1, "tester") == "invite:1:2"
    with db.begin() as conn, pytest.raises(life.LifecycleError, match="waiting to be sent"):
        life.resend(conn, 1, "tester")
    assert dispatch_now().sent == 2
    with db.connect() as conn:
        count = conn.execute(select(Invitation.send_count)).scalar_one()
        keys = set(conn.execute(select(OutboxMessage.idempotency_key)).scalars())
    assert count == 2
    assert keys == {"invite:1:1:email", "invite:1:1:sms", "invite:1:2:email", "invite:1:2:sms"}
    # The second attempt is a reminder (the resend template), the first an invitation.
    outbox = tmp_path / "home" / "outbox" / "email"
    subjects = {
        path.name: email.message_from_bytes(path.read_bytes())["Subject"]
        for path in outbox.glob("*.eml")
    }
    assert subjects["invite_1_2_email.eml"].startswith("Reminder:")
    assert not subjects["invite_1_1_email.eml"].startswith("Reminder:")
    with db.begin() as conn:
        opt_outs.opt_out(conn, 1, Channel.EMAIL, "client1@example.org", "tester")
    with db.begin() as conn, pytest.raises(life.LifecycleError, match="opted out"):
        life.resend(conn, 1, "tester")


def test_a_resend_behind_an_undecided_message_points_at_outbox_resolve(
    db: Engine, tmp_path: Path
) -> None:
    """A send that was interrupted leaves its message `unknown` (what a killed `outbox send`
    does, tested with real processes in test_dispatch_processes): `outbox send` never sends it
    again, so the refusal names `outbox resolve` and the message, not `outbox send`."""
    run_import(roster_file(tmp_path / "r.csv", [person(1)]))
    dispatch_now()
    with db.begin() as conn:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == "invite:1:1:email")
            .values(status=OutboxStatus.UNKNOWN)
        )
        message_id = conn.execute(
            select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.UNKNOWN)
        ).scalar_one()
    with db.begin() as conn, pytest.raises(life.LifecycleError) as refused:
        life.resend(conn, 1, "tester")
    assert f"`openslots outbox resolve {message_id} --sent`" in str(refused.value)
    assert "outbox send" not in str(refused.value)


def test_status_priority_and_mrn_changes_are_audited(
    db: Engine, tmp_path: Path, monkeypatch
) -> None:
    invited(db, tmp_path, [person(1)])
    register_from_app(
        email="client1@example.org",
        date_of_birth="1999-12-31",
        first_name="Test",
        last_name="Example",
        provider=PROVIDER,
        location=LOCATION,
    )  # Pending, no MRN
    with db.begin() as conn:
        life.set_connection_status(conn, 1, ConnectionStatus.APPROVED, "alice", "checked ID")
    with db.connect() as conn:
        assert eligible_connection_ids(conn) == set()  # integrated provider: no MRN yet
    with db.begin() as conn:
        life.set_mrn(conn, 1, "00001", "alice")
        life.set_priority(conn, 1, "High", ["High", "Low"], "alice")
        with pytest.raises(life.LifecycleError, match="unknown priority"):
            life.set_priority(conn, 1, "Urgent", ["High", "Low"], "alice")
    with db.connect() as conn:
        assert eligible_connection_ids(conn) == {1}
        trail = audit_events(conn, "connection", 1)
    assert [(e["action"], e["from"], e["to"], e["actor"]) for e in trail] == [
        ("status", None, "Pending", "mobile-app"),
        ("status", "Pending", "Approved", "alice"),
        ("mrn", None, "00001", "alice"),
        ("priority", None, "High", "alice"),
    ]
    for status in (ConnectionStatus.PAUSED, ConnectionStatus.DECLINED, ConnectionStatus.PENDING):
        with db.begin() as conn:
            life.set_connection_status(conn, 1, status, "alice")
        with db.connect() as conn:
            assert eligible_connection_ids(conn) == set()


def test_opt_out_holds_across_spellings_and_opt_in_restores(db: Engine, tmp_path: Path) -> None:
    invited(db, tmp_path, [person(1), person(2)])
    with db.begin() as conn:
        changed = opt_outs.opt_out(conn, 1, Channel.SMS, "+14155550002", "tester", "replied STOP")
    assert changed == 1 and invitation_status(db, 2) == "Opted-Out"
    with db.begin() as conn:
        opt_outs.opt_out(conn, 1, Channel.EMAIL, "client1@example.org", "tester")
    # A later roster writes the email and phone differently, at a new location: no invitation.
    later = [
        person(1, email="Client1@EXAMPLE.org"),
        person(2, mobile_phone="415.555.0002"),
        person(3),
    ]
    summary = run_import(roster_file(tmp_path / "later.csv", later), location="Second Site")
    assert summary.queued_invitations == 1
    with db.begin() as conn:
        assert opt_outs.opt_in(conn, 1, Channel.SMS, "+14155550002", "tester") == 1
    assert invitation_status(db, 2) == "Sent"
    with db.connect() as conn:
        rows = list_invitations(conn, 1, status="Opted-Out")
    assert [r["id"] for r in rows] == [1] and rows[0]["resend_permitted"] is False


def test_invitation_list_searches_guardians_and_sorts(db: Engine, tmp_path: Path) -> None:
    rows = [[*person(1, last_name="Zed"), "", ""], [*person(2, last_name="Alpha"), "Mona", "Lisa"]]
    invited(db, tmp_path, rows, header=GUARDIAN_HEADER)
    with db.connect() as conn:
        assert [r["id"] for r in list_invitations(conn, 1, search="mona")] == [2]
        assert [r["id"] for r in list_invitations(conn, 1, sort="last_name")] == [2, 1]
        assert [r["id"] for r in list_invitations(conn, 1, sort="last_name:desc")] == [1, 2]
        assert all(r["last_sent_at"] is not None for r in list_invitations(conn, 1))


def test_approving_a_dependent_makes_the_guardians_invitation_new(
    db: Engine, tmp_path: Path
) -> None:
    guardian_email = "parent@example.org"
    rows = [
        [*person(1, email=guardian_email, date_of_birth="2016-05-05"), "Gina", "Parent"],
        [*person(2, email=guardian_email, first_name="Gina", last_name="Parent"), "", ""],
    ]
    invited(db, tmp_path, rows, header=GUARDIAN_HEADER)
    register_from_app(
        email=guardian_email,
        date_of_birth="1999-01-01",
        first_name="Gina",
        last_name="Parent",
        provider=PROVIDER,
        location=LOCATION,
    )  # no match
    assert (invitation_status(db, 1), invitation_status(db, 2)) == ("Registered", "Registered")
    with db.begin() as conn:
        life.request_connection(conn, 1, "tester")
        life.accept_request(conn, 1)
    assert (invitation_status(db, 1), invitation_status(db, 2)) == ("Connected", "New")


def test_every_recorded_time_comes_from_the_one_clock(db: Engine, tmp_path: Path) -> None:
    """Frozen time reaches the rows: a model default (clients), a repository's own write
    (audit events, updated_at) and an import batch all record the clock's time, not the
    machine's."""
    import datetime as dt

    from openslots.connectors.database.models import AuditEvent, Client, ImportBatch
    from openslots.domain.clock import frozen_clock

    t0 = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    with frozen_clock(t0) as clock:
        run_import(roster_file(tmp_path / "r.csv", [person(1)]), integrated=True)
        clock.advance(dt.timedelta(days=21))
        register_from_app(
            email="client1@example.org",
            date_of_birth="1999-12-31",
            first_name="Test",
            last_name="Example",
            provider=PROVIDER,
            location=LOCATION,
        )
        with db.begin() as conn:
            life.set_priority(conn, 1, "High", ["High"], "alice")

    def aware(value: dt.datetime) -> dt.datetime:  # SQLite hands back naive UTC
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    with db.connect() as conn:
        created = conn.execute(select(Client.created_at)).scalar_one()
        started = conn.execute(select(ImportBatch.started_at)).scalar_one()
        audited = conn.execute(select(AuditEvent.created_at).order_by(AuditEvent.id)).scalars()
        updated = conn.execute(select(ConnectionRow.updated_at)).scalar_one()
    assert aware(created) == t0 and aware(started) == t0
    assert {aware(at) for at in audited} == {t0 + dt.timedelta(days=21)}
    assert aware(updated) == t0 + dt.timedelta(days=21)
