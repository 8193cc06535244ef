"""The seed's two screens through the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots.cli import app
from tests.factories import person

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
WHERE = ["--provider", "Dr. Screens", "--location", "Main"]


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def invite(n: int, **extra: str) -> tuple[int, object]:
    row = person(n)
    args = [
        "invite",
        "client",
        *WHERE,
        "--client-id",
        row[0],
        "--first-name",
        row[1],
        "--last-name",
        row[2],
        "--dob",
        row[3],
        "--email",
        row[4],
        "--phone",
        row[5],
    ]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return run(*args)


def test_invite_list_resend_and_refusals(db: Engine) -> None:
    code, report = invite(1)
    assert code == 0 and report["queued_invitations"] == 1
    code, report = invite(2, dob="1990/01/01")
    assert code == 1 and report["rejections"][0]["rule"] == "date_format"
    code, report = run(
        "invite",
        "dependent",
        *WHERE,
        "--client-id",
        "D1",
        "--first-name",
        "Kid",
        "--last-name",
        "Example",
        "--dob",
        "2018-01-01",
        "--guardian-first-name",
        "Gina",
        "--guardian-last-name",
        "Example",
        "--email",
        "gina@example.org",
    )
    assert code == 0 and report["queued_invitations"] == 1

    code, rows = run("invitations", "list", "--provider", "Dr. Screens", "--search", "gina")
    assert code == 0 and [r["client_id"] for r in rows] == ["D1"]
    code, refused = run("invitations", "resend", "1")
    assert code == 1 and "still queued" in refused["error"]
    assert run("outbox", "send")[0] == 0
    code, rows = run(
        "invitations",
        "list",
        "--provider",
        "Dr. Screens",
        "--status",
        "Sent",
        "--sort",
        "client_id:desc",
    )
    assert [r["client_id"] for r in rows] == ["D1", "00001"]
    assert all(r["last_sent_at"] for r in rows)
    code, resent = run("invitations", "resend", "1")
    assert code == 0 and resent["queued"] == "invite:1:2"


def test_registrations_import_csv_and_jsonl(db: Engine, tmp_path: Path) -> None:
    invite(1)
    invite(2)
    run("outbox", "send")
    csv_file = tmp_path / "registrations.csv"
    csv_file.write_text(
        "email,date_of_birth,first_name,last_name,provider,location\n"
        f"{person(1)[4].upper()},{person(1)[3]},A,B,Dr. Screens,Main\n"  # DOB match
        f"{person(2)[4]},1970-01-01,A,B,,\n"  # registered, no match
        "x@example.org,31/12/1990,A,B,,\n"  # rejected
        "new@example.org,1970-01-01,New,Person,Dr. Screens,Main\n"  # pending request
    )
    code, counts = run("registrations", "import", str(csv_file))
    assert code == 0
    assert {
        k: counts[k]
        for k in ("registrations", "dob_matches", "registered", "pending_requests", "rejected")
    } == {
        "registrations": 4,
        "dob_matches": 1,
        "registered": 1,
        "pending_requests": 1,
        "rejected": 1,
    }
    assert [(r["line"], r["field"], r["rule"]) for r in counts["rejections"]] == [
        (4, "date_of_birth", "date_format")
    ]
    # Kept like a roster import's findings (issue 8.10), under the batch the import names.
    code, kept = run("registrations", "rejections", str(counts["batch_id"]))
    assert code == 0 and (kept["batch_id"], kept["warnings"]) == (counts["batch_id"], [])
    assert [(r["line"], r["field"], r["rule"], r["message"]) for r in kept["rejections"]] == [
        (r["line"], r["field"], r["rule"], r["message"]) for r in counts["rejections"]
    ]
    assert "31/12/1990" not in json.dumps(kept)
    code, refused = run("registrations", "rejections", "999")
    assert code == 1 and "no import batch 999" in refused["error"]
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "email": "kid.parent@example.org",
                    "date_of_birth": "1980-01-01",
                    "first_name": "P",
                    "last_name": "Q",
                    "provider": "Nobody",
                    "location": "Nowhere",
                },
                {
                    "email": "ok@example.org",
                    "date_of_birth": "1980-01-01",
                    "first_name": "O",
                    "last_name": "K",
                },
            ]
        )
        + "\n"
    )
    code, counts = run("registrations", "import", str(jsonl))
    assert (counts["registered"], counts["rejected"]) == (1, 1)
    assert counts["rejections"][0]["line"] == 1
    assert counts["rejections"][0]["rule"] == "unknown_provider_or_location"
    code, kept = run("registrations", "rejections", str(counts["batch_id"]))
    assert [(r["line"], r["field"], r["rule"]) for r in kept["rejections"]] == [
        (1, "provider", "unknown_provider_or_location")
    ]

    code, rows = run("connections", "list", "--provider", "Dr. Screens", "--sort", "id")
    assert code == 0
    assert [(r["id"], r["status"], r["client_id"], r["receives_alerts"]) for r in rows] == [
        (1, "Approved", "00001", True),
        (2, "Pending", None, False),
    ]
    assert {"first_name", "last_name", "client_id", "status", "id"} <= set(rows[0])
    code, invitations = run("invitations", "list", "--provider", "Dr. Screens", "--sort", "id")
    assert [r["status"] for r in invitations] == ["Connected", "Registered"]
    code, _ = run("invitations", "request", "2")
    code, _ = run("invitations", "accept", "2")
    assert code == 0
    code, invitations = run("invitations", "list", "--provider", "Dr. Screens", "--sort", "id")
    assert [r["status"] for r in invitations] == ["Connected", "Connected"]


def test_connection_commands_audit_and_opt_out(db: Engine, tmp_path: Path) -> None:
    invite(1)
    run("outbox", "send")
    from openslots.api import register_from_app

    register_from_app(
        email="someone@example.org",
        date_of_birth="1970-01-01",
        first_name="S",
        last_name="O",
        provider="Dr. Screens",
        location="Main",
    )
    code, changed = run(
        "connections", "set-status", "1", "approved", "--actor", "bob", "--reason", "verified"
    )
    assert code == 0 and changed == {
        "connection_id": 1,
        "status": "Approved",
        "from": "Pending",
        "to": "Approved",
    }
    assert run("connections", "set-priority", "1", "High")[0] == 0
    code, refused = run("connections", "set-priority", "1", "Whenever")
    assert code == 1 and "unknown priority" in refused["error"]
    assert run("connections", "set-mrn", "1", "M-77")[0] == 0
    code, events = run("audit", "--connection", "1")
    assert [(e["action"], e["to"]) for e in events] == [
        ("status", "Pending"),
        ("status", "Approved"),
        ("priority", "High"),
        ("mrn", "M-77"),
    ]
    assert events[1]["actor"] == "bob" and events[1]["reason"] == "verified"

    code, out = run("opt-out", "--provider", "Dr. Screens", "--phone", "(415) 555-0001")
    assert code == 0 and out["invitations_changed"] == 1
    code, refused = run("invitations", "resend", "1")
    assert code == 1 and "opted out" in refused["error"]
    code, out = run("opt-in", "--provider", "Dr. Screens", "--phone", "+1 415 555 0001")
    assert code == 0 and out["invitations_changed"] == 1
    code, events = run("audit", "--invitation", "1")
    assert [e["to"] for e in events] == ["Opted-Out", "Sent"]
