"""The `openslots` command line through Typer's runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots.cli import app
from tests.factories import HEADER, connection, person, roster_file

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def run_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_roster_import_json_contract(db: Engine, tmp_path: Path) -> None:
    rows = [person(1), person(2, date_of_birth="12/31/1990"), person(3, mobile_phone="99")]
    code, report = run_json(
        "roster",
        "import",
        str(roster_file(tmp_path / "r.csv", rows)),
        "--provider",
        "Dr. Cli",
        "--location",
        "Main",
    )
    assert code == 0
    expected_keys = {
        "batch_id",
        "mode",
        "total_rows",
        "accepted",
        "rejected",
        "new_clients",
        "updated_clients",
        "mrns_mapped",
        "needs_review",
        "queued_invitations",
        "rejections",
    }
    assert expected_keys <= set(report)
    assert (report["total_rows"], report["accepted"], report["rejected"]) == (3, 2, 1)
    assert report["mode"] == "invite"
    assert report["rejections"] == [
        {
            "line": 3,
            "field": "date_of_birth",
            "rule": "date_format",
            "message": "date_of_birth must be written YYYY-MM-DD (use 1970-01-01 when "
            "unknown); day/month orders such as MM/DD/YYYY are ambiguous and are not guessed",
        }
    ]
    assert "12/31/1990" not in json.dumps(report)
    assert [w["line"] for w in report["warnings"]] == [4]

    code, again = run_json("roster", "rejections", str(report["batch_id"]))
    assert code == 0 and again["rejections"] == report["rejections"]


def test_missing_column_is_a_clear_error_with_exit_1(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1)[:4]], header=HEADER[:4])
    code, report = run_json("roster", "import", str(path), "--provider", "P", "--location", "L")
    assert code == 1
    assert "required column missing: email" in report["error"]


def test_strict_failure_prints_the_report_and_exits_1(db: Engine, tmp_path: Path) -> None:
    path = roster_file(tmp_path / "r.csv", [person(1), person(2, email="x")])
    code, report = run_json(
        "roster", "import", str(path), "--provider", "P", "--location", "L", "--strict"
    )
    assert code == 1
    assert report["status"] == "failed" and report["rejected"] == 1


def test_sync_mode_and_providers_commands(db: Engine, tmp_path: Path) -> None:
    code, added = run_json(
        "providers", "add", "Dr. Sync", "--location", "East", "--location", "West", "--integrated"
    )
    assert code == 0 and added["integrated"] is True
    rows = [person(1), person(2)]
    connection(db, "Dr. Sync", "East", rows[0], status="Approved")
    code, report = run_json(
        "roster",
        "import",
        str(roster_file(tmp_path / "r.csv", rows)),
        "--provider",
        "Dr. Sync",
        "--location",
        "East",
        "--mode",
        "sync",
    )
    assert code == 0
    assert (report["mrns_mapped"], report["queued_invitations"]) == (1, 1)
    code, providers = run_json("providers", "list")
    assert providers == [
        {
            "id": 1,
            "name": "Dr. Sync",
            "integrated": True,
            "locations": [{"id": 1, "name": "East"}, {"id": 2, "name": "West"}],
        }
    ]


def test_outbox_send_and_status(db: Engine, tmp_path: Path, isolated_env: Path) -> None:
    runner.invoke(
        app,
        [
            "roster",
            "import",
            str(roster_file(tmp_path / "r.csv", [person(1)])),
            "--provider",
            "P",
            "--location",
            "L",
        ],
    )
    code, sent = run_json("outbox", "send")
    assert code == 0 and sent["sent"] == 2 and sent["materialised"] == 2
    assert Path(sent["outbox_dir"]) == (isolated_env / "outbox").resolve()
    code, status = run_json("outbox", "status")
    assert status == {"email:sent": 1, "sms:sent": 1}


def test_template_header_round_trips_through_the_importer(db: Engine, tmp_path: Path) -> None:
    result = runner.invoke(app, ["roster", "template"])
    path = tmp_path / "t.csv"
    path.write_text(result.stdout + ",".join([*person(1), "", ""]) + "\n")
    code, report = run_json("roster", "import", str(path), "--provider", "P", "--location", "L")
    assert code == 0 and report["accepted"] == 1


def test_help_explains_the_modes() -> None:
    result = runner.invoke(app, ["roster", "import", "--help"])
    assert result.exit_code == 0
    assert "invite" in result.stdout and "sync" in result.stdout and "--strict" in result.stdout


def test_demo_runs_the_whole_pipeline_on_embedded_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell configured for production (a relay, quiet hours all day) changes nothing: the
    # demo's synthetic patients go to files, and its texts are not held for the morning.
    monkeypatch.setenv("OPENSLOTS_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("OPENSLOTS_SMS_BACKEND", "twilio")
    monkeypatch.setenv("OPENSLOTS_SMS_QUIET_HOURS", "00:00-23:59")
    code, result = run_json("demo", "--dir", str(tmp_path / "demo"), "--clients", "30")
    assert code == 0
    assert result["database"].startswith("sqlite:///")
    integrated, plain = result["imports"]
    for report in (integrated, plain):
        assert report["total_rows"] == report["accepted"] + report["rejected"] == 37
        assert report["rejected"] == 6
    assert integrated["mrns_mapped"] > 0  # registered connections got their MRN
    assert plain["queued_invitations"] == 31
    emails = list(Path(result["email_dir"]).glob("*.eml"))
    texts = list(Path(result["sms_dir"]).glob("*.json"))
    assert result["dispatch"]["sent"] == len(emails) + len(texts)
    assert len(emails) > 0 and len(texts) > 0
    assert result["dispatch"]["by_channel"] == {"email": len(emails), "sms": len(texts)}


def test_demo_in_human_mode_writes_its_results_to_stdout_and_ends_with_next_commands(
    tmp_path: Path,
) -> None:
    """`openslots demo > out.txt` gives a file with the results (logs stay on stderr)."""
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--clients", "10"])
    assert result.exit_code == 0, result.output
    assert "dispatched:" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].strip().startswith("openslots roster batches")
