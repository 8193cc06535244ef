"""`openslots invitations resend-due` (the invitation-resend flow) and `providers
set-cadence` through the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from openslots.cli import app
from openslots.connectors.database.models import InvitationResend, OutboxMessage
from openslots.domain import clock
from tests.factories import person, roster_file
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_roster_import import LOCATION, PROVIDER, run_import

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
SENT = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def sent_invitations(tmp_path: Path, count: int) -> None:
    with clock.frozen_clock(SENT):
        run_import(roster_file(tmp_path / "r.csv", [person(n) for n in range(1, count + 1)]))
        dispatch_now()


def rows(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(InvitationResend)).scalar_one()


def test_dry_run_says_what_the_real_run_does(db: Engine, tmp_path: Path) -> None:
    sent_invitations(tmp_path, 3)
    as_of = (SENT.date() + dt.timedelta(days=65)).isoformat()  # 60 due; 21 and 30 superseded
    code, dry = run("invitations", "resend-due", "--as-of", as_of, "--dry-run")
    assert code == 0 and rows(db) == 0
    code, real = run("invitations", "resend-due", "--as-of", as_of)
    assert code == 0
    assert isinstance(dry, dict) and isinstance(real, dict)
    assert (dry.pop("dry_run"), real.pop("dry_run")) == (True, False)
    assert (
        dry
        == real
        == {
            "as_of": as_of,
            "due": 3,
            "queued": 3,
            "skipped": {"superseded": 6},
            "by_provider": {
                PROVIDER: {
                    "cadence": [21, 30, 60, 90, 120],
                    "due": 3,
                    "queued": 3,
                    "skipped": {"superseded": 6},
                }
            },
        }
    )
    assert rows(db) == 9
    code, again = run("invitations", "resend-due", "--as-of", as_of)
    assert isinstance(again, dict) and (again["due"], again["queued"]) == (0, 0)
    code, sent = run("outbox", "send")
    assert isinstance(sent, dict) and sent["sent"] == 6  # an email and a text each
    with db.connect() as conn:
        keys = set(
            conn.execute(
                select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.idempotency_key.like("resend:%")
                )
            ).scalars()
        )
    assert keys == {f"resend:{n}:60:{c}" for n in (1, 2, 3) for c in ("email", "sms")}
    code, listed = run("invitations", "list", "--provider", PROVIDER, "--location", LOCATION)
    assert isinstance(listed, list) and all(r["status"] == "Sent" for r in listed)


def test_a_provider_cadence_and_the_provider_filter(db: Engine, tmp_path: Path) -> None:
    sent_invitations(tmp_path, 1)
    code, _ = run("providers", "add", "Dr. Other", "--location", "Elm")
    assert code == 0
    code, result = run("providers", "set-cadence", PROVIDER, "7, 14")
    assert code == 0
    assert result == {
        "provider": PROVIDER,
        "cadence": [7, 14],
        "source": "provider",
        "previous": None,
    }
    as_of = (SENT.date() + dt.timedelta(days=8)).isoformat()
    code, due = run("invitations", "resend-due", "--as-of", as_of, "--provider", "Dr. Other")
    assert code == 0 and isinstance(due, dict)
    assert (due["queued"], list(due["by_provider"])) == (0, ["Dr. Other"])
    code, due = run("invitations", "resend-due", "--as-of", as_of, "--provider", PROVIDER)
    assert isinstance(due, dict) and due["by_provider"][PROVIDER]["queued"] == 1
    code, result = run("providers", "set-cadence", PROVIDER, "default")
    assert isinstance(result, dict)
    assert (result["cadence"], result["source"], result["previous"]) == (
        [21, 30, 60, 90, 120],
        "setting",
        [7, 14],
    )


def test_the_setting_is_the_default_cadence(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_invitations(tmp_path, 1)
    monkeypatch.setenv("OPENSLOTS_RESEND_CADENCE", "3,10")
    as_of = (SENT.date() + dt.timedelta(days=4)).isoformat()
    code, due = run("invitations", "resend-due", "--as-of", as_of)
    assert code == 0 and isinstance(due, dict)
    assert due["by_provider"][PROVIDER]["cadence"] == [3, 10] and due["queued"] == 1


@pytest.mark.parametrize(
    ("cadence", "names"),
    [
        ("21,3x,60", "step 2 ('3x')"),
        ("21;30", "step 1 ('21;30')"),
        ("0,21", "step 1 (0)"),
        ("21,30,30", "step 3 (30)"),
        ("", "empty"),
    ],
)
def test_a_wrong_cadence_names_the_wrong_part(db: Engine, cadence: str, names: str) -> None:
    run("providers", "add", "Dr. C", "--location", "Main")
    code, error = run("providers", "set-cadence", "Dr. C", cadence)
    assert code == 1 and isinstance(error, dict)
    assert names in error["error"]
    human = runner.invoke(app, ["providers", "set-cadence", "Dr. C", cadence])
    assert human.exit_code == 1 and names in human.stderr


def test_errors_of_resend_due(db: Engine) -> None:
    code, error = run("invitations", "resend-due", "--as-of", "03/02/2026")
    assert code == 2 and isinstance(error, dict) and "YYYY-MM-DD" in error["error"]
    code, error = run("invitations", "resend-due", "--provider", "Nobody")
    assert code == 1 and isinstance(error, dict) and "unknown provider" in error["error"]
    code, error = run("providers", "set-cadence", "Nobody", "21,30")
    assert code == 1 and isinstance(error, dict) and "unknown provider" in error["error"]
    human = runner.invoke(app, ["invitations", "resend-due", "--dry-run"])
    assert human.exit_code == 0 and "0 due" in human.stderr
