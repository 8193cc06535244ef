"""`connections set-availability`, the `availability` column of `registrations import` and
`connections list --json` through Typer's runner, on SQLite and PostgreSQL (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots.cli import app
from tests.cli.test_lifecycle_cli import invite, run
from tests.factories import person

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_set_availability_audited_listed_and_refused_naming_the_part(db: Engine) -> None:
    invite(1)
    run("outbox", "send")
    from openslots.api import register_from_app

    row = person(1)
    register_from_app(email=row[4], date_of_birth=row[3], first_name="A", last_name="B")
    code, result = run(
        "connections", "set-availability", "1", "mon-fri 08:00-12:00;Sat 09:00-11:00",
        "--actor", "front-desk",
    )  # fmt: skip
    assert (code, result) == (
        0,
        {
            "connection_id": 1,
            "availability": "Mon-Fri 08:00-12:00; Sat 09:00-11:00",
            "result": None,
        },
    )
    code, rows = run("connections", "list", "--provider", "Dr. Screens")
    assert [r["availability"] for r in rows] == ["Mon-Fri 08:00-12:00; Sat 09:00-11:00"]
    code, error = run("connections", "set-availability", "1", "Mon-Fry 08:00-12:00")
    assert code == 1
    assert error == {"error": "availability: unknown day `Fry`"}
    plain = CliRunner().invoke(app, ["connections", "set-availability", "1", "Mon 8-12"])
    assert plain.exit_code == 1 and "expected HH:MM, got `8`" in plain.output
    assert run("connections", "set-availability", "1", "any")[1]["availability"] is None
    code, events = run("audit", "--connection", "1")
    changes = [(e["from"], e["to"], e["actor"]) for e in events if e["action"] == "availability"]
    assert changes[0] == (None, "Mon-Fri 08:00-12:00; Sat 09:00-11:00", "front-desk")
    assert changes[1][:2] == ("Mon-Fri 08:00-12:00; Sat 09:00-11:00", None)
    assert run("connections", "set-availability", "99", "any")[0] == 1


def test_registrations_import_sets_windows_and_rejects_a_bad_one(
    db: Engine, tmp_path: Path
) -> None:
    invite(1)
    run("outbox", "send")
    csv_file = tmp_path / "registrations.csv"
    csv_file.write_text(
        "email,date_of_birth,first_name,last_name,provider,location,Availability\n"
        f"{person(1)[4]},{person(1)[3]},A,B,Dr. Screens,Main,Tue 09:00-11:00; Thu 14:00-16:00\n"
        "new@example.org,1970-01-01,New,Person,Dr. Screens,Main,Mon-Fry 08:00-12:00\n"
        "other@example.org,1970-01-01,Other,Person,Dr. Screens,Main,\n"
    )
    code, counts = run("registrations", "import", str(csv_file))
    assert code == 0
    assert (counts["dob_matches"], counts["pending_requests"], counts["rejected"]) == (1, 1, 1)
    assert [(r["line"], r["field"], r["rule"], r["message"]) for r in counts["rejections"]] == [
        (3, "availability", "availability_format", "availability: unknown day `Fry`")
    ]
    code, rows = run("connections", "list", "--provider", "Dr. Screens", "--sort", "id")
    assert [(r["status"], r["availability"]) for r in rows] == [
        ("Approved", "Tue 09:00-11:00; Thu 14:00-16:00"),
        ("Pending", None),
    ]
    json.dumps(rows)  # JSON-ready as listed
