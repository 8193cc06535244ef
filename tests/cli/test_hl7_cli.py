"""`openslots hl7 ...` through Typer's runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from openslots.cli import app
from tests import hl7_messages as m

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


def run(*args: str) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_import_errors_and_reprocess(db: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.hl7").write_text("\r".join([m.EPIC_A04, m.SIU_S15_CANCELLED, m.LAB_RESULT]))
    (folder / "b.hl7").write_bytes(
        b"\x0b"
        + m.EPIC_A04.replace("19800102", "1980").encode().replace(b"EPC0001", b"EPC0777")
        + b"\x1c\r"
    )
    code, counts = run("hl7", "import", str(folder))
    assert code == 0
    expected = {
        "messages": 4,
        "applied": 2,
        "duplicates": 0,
        "ignored": 1,
        "errors": 1,
        "rows_accepted": 1,
        "rows_rejected": 0,  # the bad PID-7 is refused at receipt (AE): it never becomes a row
        "slots_opened": 1,
        "slots_filled": 0,
    }
    assert {k: counts[k] for k in expected} == expected
    code, again = run("hl7", "import", str(folder))
    assert (again["messages"], again["duplicates"], again["applied"]) == (4, 4, 0)
    code, errors = run("hl7", "errors")
    assert [(e["control_id"], e["error"]) for e in errors] == [
        (
            "EPC0777",
            "PID-7 (date_format): the birth date (PID-7.1) must be an HL7 date YYYYMMDD, "
            "optionally with time and UTC offset (YYYYMMDDHHMM[SS][+/-ZZZZ])",
        )
    ]
    code, counts = run("hl7", "reprocess", str(errors[0]["id"]))
    assert code == 0 and counts["requeued"] == 1 and counts["errors"] == 1
    result = runner.invoke(app, ["hl7", "reprocess"])
    assert result.exit_code == 2


def test_import_lists_and_warns_about_files_it_did_not_read(db: Engine, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "adt_0001.txt").write_text(m.EPIC_A04)
    (drop / "notes.md").write_text("# notes\n")
    result = runner.invoke(app, ["hl7", "import", str(drop), "--json"])
    counts = json.loads(result.stdout)
    assert (result.exit_code, counts["messages"], counts["applied"]) == (0, 1, 1)
    assert [f["path"] for f in counts["skipped_files"]] == [str(drop / "notes.md")]
    assert f"warning: skipped {drop / 'notes.md'}" in result.stderr


def test_import_names_an_existing_provider_it_did_not_make_integrated(
    db: Engine, tmp_path: Path
) -> None:
    provider = "Maria Rivera (D77)"  # what EPIC_A04's PV1-7 names
    assert run("providers", "add", provider, "--location", "Main")[0] == 0
    (tmp_path / "a.hl7").write_text(m.EPIC_A04)
    result = runner.invoke(app, ["hl7", "import", str(tmp_path / "a.hl7")])
    assert result.exit_code == 0, result.output
    assert f"provider {provider!r} is not EHR-integrated" in result.output
    _code, providers = run("providers", "list")
    assert [(p["name"], p["integrated"]) for p in providers] == [(provider, False)]
