"""`openslots providers set-feed | set-integrated | rename | merge` (issue 8.7, 8.8): audited
changes of a provider, and what a merge does on every conflict. SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from openslots.api import invite, opt_out
from openslots.cli import app
from openslots.connectors.database.models import (
    Client,
    Invitation,
    Location,
    OptOut,
    Provider,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from tests.factories import connection, person

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def invite_person(provider: str, location: str, n: int, **overrides: str) -> None:
    row = person(n, **overrides)
    invite(
        provider,
        location,
        client_id=row[0],
        first_name=row[1],
        last_name=row[2],
        date_of_birth=row[3],
        email=row[4],
        mobile_phone=row[5],
    )


def test_set_integrated_set_feed_and_rename_are_audited(db: Engine) -> None:
    connection(db, "Dr. Lee", "Main", person(1))
    code, changed = run("providers", "set-integrated", "Dr. Lee", "--actor", "ana")
    assert code == 0 and changed == {
        "provider_id": 1,
        "provider": "Dr. Lee",
        "from": False,
        "to": True,
    }
    assert run("providers", "set-integrated", "Dr. Lee", "--off", "--reason", "no EHR")[0] == 0
    code, fed = run(
        "providers", "set-feed", "Dr. Lee", "--application", "EPIC", "--facility", "NORTH"
    )
    assert code == 0 and (fed["application"], fed["facility"]) == ("EPIC", "NORTH")
    code, renamed = run("providers", "rename", "Dr. Lee", "Dr. Ana Lee")
    assert code == 0 and renamed == {"provider_id": 1, "from": "Dr. Lee", "to": "Dr. Ana Lee"}
    code, events = run("audit", "--provider", "1")
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("integrated", "False", "True"),
        ("integrated", "True", "False"),
        ("feed", None, "EPIC^NORTH"),
        ("name", "Dr. Lee", "Dr. Ana Lee"),
    ]
    assert events[0]["actor"] == "ana" and events[1]["reason"] == "no EHR"

    connection(db, "Dr. Other", "Main", person(2))
    code, refused = run("providers", "rename", "Dr. Ana Lee", "Dr. Other")
    assert code == 1 and "merge" in refused["error"]
    code, refused = run("providers", "set-integrated", "Nobody")
    assert code == 1 and "unknown provider" in refused["error"]
    assert "--application" in runner.invoke(app, ["providers", "set-feed", "--help"]).stdout


def test_merge_moves_everything_and_settles_each_conflict(db: Engine) -> None:
    # The practice's provider, and the one a feed created for the same doctor.
    invite_person("Dr. Rivera", "Main", 1)  # Client ID 00001 at both: folds
    invite_person("Maria Rivera (D77)", "Main", 1)  # same location name: one invitation stays
    invite_person("Maria Rivera (D77)", "CARDIO", 2)  # a location only the feed's has: moves
    connection(db, "Maria Rivera (D77)", "CARDIO", person(2), mrn="00002")
    for provider in ("Dr. Rivera", "Maria Rivera (D77)"):
        opt_out(provider, "email", "client1@example.org", "desk", None)  # kept once
    opt_out("Maria Rivera (D77)", "email", "client2@example.org", "desk", None)  # moves

    code, merged = run("providers", "merge", "Maria Rivera (D77)", "Dr. Rivera")
    assert code == 0, merged
    assert merged == {
        "provider": "Dr. Rivera",
        "merged": "Maria Rivera (D77)",
        "provider_id": 1,
        "locations_moved": 1,
        "locations_merged": 1,
        "clients_moved": 1,
        "clients_folded": 1,
        "invitations_dropped": 1,
        "connections_moved": 1,
        "slots_moved": 0,
        "opt_outs_moved": 1,
    }
    with db.connect() as conn:
        assert conn.execute(select(Provider.name)).scalars().all() == ["Dr. Rivera"]
        assert sorted(conn.execute(select(Location.name)).scalars()) == ["CARDIO", "Main"]
        assert sorted(conn.execute(select(Client.client_ref)).scalars()) == ["00001", "00002"]
        assert conn.execute(select(func.count()).select_from(Invitation)).scalar_one() == 2
        assert set(conn.execute(select(Invitation.provider_id)).scalars()) == {1}
        assert set(conn.execute(select(ConnectionRow.provider_id)).scalars()) == {1}
        assert conn.execute(select(func.count()).select_from(OptOut)).scalar_one() == 2
    code, events = run("audit", "--provider", "1")
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("merge", "Maria Rivera (D77)", "Dr. Rivera")
    ]
    code, refused = run("providers", "merge", "Dr. Rivera", "Dr. Rivera")
    assert code == 1 and "itself" in refused["error"]
