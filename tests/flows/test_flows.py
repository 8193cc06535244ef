"""The flows under Prefect's test harness, on both databases, and what Prefect gets to see.

The PHI test runs the flows on synthetic patients (including rejected rows and a failing strict
import) and then reads every table of Prefect's own database, its local result storage and the
captured console output, looking for each patient's names, email, phone and date of birth.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, PREFECT_SERVER_DATABASE_CONNECTION_URL
from sqlalchemy import Engine, func, select

from openslots.connectors.database import roster as roster_repo
from openslots.connectors.database.models import Client, OutboxMessage
from openslots.domain import clock
from openslots.errors import PipelineStepError, RosterRejectedError
from openslots.flows.dispatch import dispatch
from openslots.flows.invitation_resend import invitation_resend
from openslots.flows.roster_sync import roster_sync
from tests.factories import person, roster_file

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Distinctive synthetic values, so any occurrence in Prefect's records is a leak.
PATIENTS = [
    person(
        1,
        client_id="MRN-QX77311",
        first_name="Quillonara",
        last_name="Vexbridge",
        email="quillonara.v@example.org",
        date_of_birth="1961-07-19",
        mobile_phone="(917) 555-0147",
    ),
    person(
        2,
        client_id="MRN-QX77312",
        first_name="Marisoleth",
        last_name="Drangwick",
        email="mari.dr@example.org",
        date_of_birth="1977-11-03",
        mobile_phone="646-555-0199",
    ),
    # Rejected rows: their values reach validation and error paths.
    person(
        3,
        client_id="MRN-QX77313",
        first_name="Ostrevanya",
        last_name="Plimbury",
        email="ostre@@example.org",
        date_of_birth="1952-02-30",
        mobile_phone="+999 1234 5678",
    ),
    person(
        4,
        client_id="MRN-QX77314",
        first_name="Tessivane9",
        last_name="Korrowdale",
        email="tess.k@example.org",
        date_of_birth="04/05/1990",
        mobile_phone="+1 212 555 0183",
    ),
]
PHI = sorted(
    {value for row in PATIENTS for value in row}
    | {"+19175550147", "9175550147", "+16465550199", "Vexbridge"}
)


def _prefect_text() -> str:
    """Everything Prefect stored: every column of every table, plus local result files."""
    APILogWorker.drain_all(timeout=10)
    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    path = url.split(":///", 1)[1]
    chunks = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                chunks.append(" ".join(str(v) for v in row))
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    if storage.exists():
        chunks += [
            p.read_bytes().decode("utf-8", "replace") for p in storage.rglob("*") if p.is_file()
        ]
    return "\n".join(chunks)


def test_roster_sync_and_dispatch_end_to_end(db: Engine, tmp_path: Path) -> None:
    path = roster_file(
        tmp_path / "roster.csv", [person(n) for n in range(1, 21)] + [person(21, email="nope")]
    )
    summary = roster_sync(str(path), "Dr. Flow", "Clinic A", mode="invite")
    assert (summary["total_rows"], summary["accepted"], summary["rejected"]) == (21, 20, 1)
    assert summary["queued_invitations"] == 20
    again = roster_sync(str(path), "Dr. Flow", "Clinic A", mode="invite")
    assert again["queued_invitations"] == 0
    sent = dispatch()
    assert sent["sent"] == 40  # 20 emails + 20 texts
    assert (sent["materialised"], sent["dead"], sent["expired_leases"]) == (40, 0, 0)
    assert set(sent) == {
        "claimed",
        "sent",
        "failed",
        "unknown",
        "cancelled",
        "dead",
        "materialised",
        "returned_to_pending",
        "expired_leases",
        "by_channel",
    }
    assert dispatch()["sent"] == 0
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Client)).scalar_one() == 20
        statuses = conn.execute(select(OutboxMessage.status).distinct()).scalars().all()
    assert statuses == ["sent"]


def test_no_patient_data_reaches_prefect(
    db: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    path = roster_file(tmp_path / "roster.csv", PATIENTS)
    summary = roster_sync(str(path), "Dr. Private", "Clinic P", mode="sync")
    assert (summary["accepted"], summary["rejected"]) == (2, 2)
    dispatch()
    with pytest.raises(RosterRejectedError):
        roster_sync(str(path), "Dr. Private", "Clinic Q", mode="invite", strict=True)

    # An unexpected failure deep in a step, whose third-party message quotes a patient (as
    # driver and pandas errors can): it must reach Prefect without that text.
    def quoting_failure(*_args: object) -> None:
        raise ValueError(f"bad value {PATIENTS[0][1]} {PATIENTS[0][4]}")

    # The resend cadence, 200 days on: the steps come due and dispatch sends them.
    later = (clock.now() + dt.timedelta(days=200)).date().isoformat()
    assert invitation_resend(as_of=later)["queued"] == 2
    assert dispatch()["sent"] == 4

    monkeypatch.setattr(roster_repo, "upsert_clients", quoting_failure)
    with pytest.raises(PipelineStepError) as error:
        roster_sync(str(path), "Dr. Private", "Clinic P", mode="sync")
    assert error.value.cause_type == "ValueError"
    assert PATIENTS[0][1] not in str(error.value)

    stored = _prefect_text()
    console = "".join(capfd.readouterr())
    assert "roster-import-report" in stored  # the artifact was published...
    assert "| rejected | 2 |" in stored  # ...with counts
    assert "invitation-resend-report" in stored
    leaks = [value for value in PHI if value in stored or value in console]
    assert leaks == []


def test_no_patient_data_from_hl7_reaches_prefect(db: Engine, tmp_path: Path) -> None:
    from openslots.flows.hl7_ingest import hl7_import
    from tests import hl7_messages as m

    secret = (
        m.EPIC_A04.replace("Núñez", "Zorvandelle")
        .replace("Inés", "Quibriana")
        .replace("ines.n@example.org", "quibriana.z@example.org")
        .replace("E1001", "MRN-ZQ4471")
    )
    invalid = (
        secret.replace("EPC0001", "EPC0002")
        .replace("19800102", "19801340")
        .replace("MRN-ZQ4471", "MRN-ZQ4472")
    )
    path = tmp_path / "feed.hl7"
    path.write_text("\r".join([secret, invalid]))
    counts = hl7_import([str(path)])
    assert (counts["applied"], counts["errors"]) == (1, 1)
    stored = _prefect_text()
    leaks = [
        v
        for v in (
            "Zorvandelle",
            "Quibriana",
            "quibriana.z@example.org",
            "MRN-ZQ4471",
            "MRN-ZQ4472",
            "19801340",
            "9175550147",
        )
        if v in stored
    ]
    assert leaks == []


def test_patient_shaped_text_in_a_run_log_is_redacted_before_prefect_stores_it() -> None:
    """The second line of defence: a log call that quotes a patient value by mistake reaches
    Prefect's API redacted (the first line: no log call quotes one)."""
    from prefect import flow, task

    from openslots.tasks._safety import REDACTED, run_logger

    @task
    def careless() -> None:
        run_logger().warning(
            "row for zorvandelle.q@example.org (415) 555-0199 born 1961-07-13 failed"
        )

    @flow
    def careless_flow() -> None:
        careless()

    careless_flow()
    stored = _prefect_text()
    assert "zorvandelle.q@example.org" not in stored
    assert "555-0199" not in stored and "1961-07-13" not in stored
    assert f"row for {REDACTED} {REDACTED} born {REDACTED} failed" in stored


# Values no flow may hand to Prefect, for the test of every flow below: registrations and an
# HL7 feed of their own, beside the roster PATIENTS.
REGISTRANT = ("Zephyrine", "Ulvancourt", "zeph.ulv@example.org", "1949-08-23", "6465550133")
HL7_PATIENT = ("Zorvandelle", "Quibriana", "quibriana.z@example.org", "MRN-ZQ4471", "19801340")


def _secret_hl7() -> str:
    from tests import hl7_messages as m

    secret = (
        m.EPIC_A04.replace("Núñez", HL7_PATIENT[0])
        .replace("Inés", HL7_PATIENT[1])
        .replace("ines.n@example.org", HL7_PATIENT[2])
        .replace("E1001", HL7_PATIENT[3])
    )
    # The same patient again with an impossible birth date: an error message in the batch.
    invalid = (
        secret.replace("EPC0001", "EPC0002")
        .replace("19800102", HL7_PATIENT[4])
        .replace(HL7_PATIENT[3], "MRN-ZQ4472")
    )
    return "\r".join([secret, invalid])


def test_no_patient_data_from_any_flow_or_failure_path_reaches_prefect(
    db: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """Every flow (the drops and what they start, hl7 ingest, registrations, dispatch through
    an SMTP server that refuses a patient by address, open-slot alerts with its event) and a
    real database constraint violation whose driver message quotes a patient's email."""
    from sqlalchemy import insert, select

    from openslots import api
    from openslots.connectors.database.models import Channel, OptOut, Provider
    from openslots.flows.drops import hl7_drop, roster_drop
    from openslots.flows.hl7_ingest import hl7_ingest
    from openslots.flows.open_slot_alerts import open_slot_alerts
    from openslots.flows.registrations import registrations_import
    from tests.smtp_server import SmtpSink
    from tests.tasks._dispatch import use_smtp

    drop = tmp_path / "drop"
    roster_file(drop / "roster" / "Dr. Secret" / "Clinic S" / "roster.csv", PATIENTS)
    (drop / "hl7").mkdir(parents=True)
    (drop / "hl7" / "feed.hl7").write_text(_secret_hl7())
    assert len(roster_drop(str(drop))["imported"]) == 1
    hl7 = hl7_drop(str(drop))
    assert (hl7["applied"], hl7["errors"]) == (1, 1)
    assert hl7_ingest()["messages"] == 0

    registrations = tmp_path / "registrations.csv"
    registrations.write_text(
        "email,date_of_birth,first_name,last_name,mobile_phone,provider,location\n"
        f"{PATIENTS[0][4]},{PATIENTS[0][3]},{PATIENTS[0][1]},{PATIENTS[0][2]},,"
        "Dr. Secret,Clinic S\n"  # a DOB match
        f"{REGISTRANT[2]},31/12/1949,{REGISTRANT[0]},{REGISTRANT[1]},{REGISTRANT[4]},,\n"
    )
    counts = registrations_import(str(registrations))
    assert (counts["dob_matches"], counts["rejected"]) == (1, 1)

    with SmtpSink() as sink:
        # A relay's refusal that echoes the address, as real ones do.
        sink.fail_rcpt(PATIENTS[1][4], f"550 5.1.1 <{PATIENTS[1][4]}>: user unknown")
        use_smtp(monkeypatch, sink)
        sent = dispatch()
    assert sent["dead"] >= 1 and sent["sent"] >= 1

    start = (clock.now() + dt.timedelta(days=3)).date().isoformat() + "T11:00"
    opened = api.open_slot("Dr. Secret", "Clinic S", start, 30)
    assert open_slot_alerts(slot_id=opened["slot_id"])["messages"] == 0

    def violate_a_constraint(conn: Any, *_args: object) -> None:
        # PostgreSQL's message for this names the key's values: a patient's email.
        provider_id = conn.execute(select(Provider.id)).scalars().first()
        row = {"provider_id": provider_id, "channel": Channel.EMAIL, "address": PATIENTS[0][4]}
        conn.execute(insert(OptOut), [row, row])

    monkeypatch.setattr(roster_repo, "upsert_clients", violate_a_constraint)
    with pytest.raises(PipelineStepError) as error:
        roster_sync(str(_roster_copy(tmp_path)), "Dr. Secret", "Clinic S", mode="sync")
    assert error.value.cause_type == "IntegrityError"

    stored = _prefect_text()
    console = "".join(capfd.readouterr())
    for key in ("roster-import-report-dr-secret-clinic-s", "hl7-drop-report", "dispatch-report"):
        assert key in stored
    assert "registrations-import-report" in stored and "open-slot-alerts-report" in stored
    assert "openslots.slot.opened" in stored  # the event was stored, with the slot id only
    values = set(PHI) | set(REGISTRANT) | set(HL7_PATIENT) | {"+16465550133", "1949-12-31"}
    leaks = sorted(value for value in values if value in stored or value in console)
    assert leaks == []


def _roster_copy(tmp_path: Path) -> Path:
    return roster_file(tmp_path / "again.csv", PATIENTS)
