"""What a person sees in the Prefect UI, read back through the Prefect API: run names and tags
from parameters that are not patient data, report artifacts under stable keys whose counts
reconcile, progress artifacts; the `openslots.slot.opened` event and the open-slot-alerts
flow that its trigger runs (idempotent after `slots open` queued the offers)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
)
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from sqlalchemy import Engine, func, select

from openslots import api
from openslots.connectors.database.models import OutboxMessage
from openslots.domain.clock import frozen_clock
from openslots.flows.dispatch import dispatch
from openslots.flows.drops import roster_drop
from openslots.flows.hl7_ingest import hl7_import
from openslots.flows.invitation_resend import invitation_resend
from openslots.flows.open_slot_alerts import open_slot_alerts
from openslots.flows.roster_sync import roster_sync
from openslots.reports import artifact_key, slug
from tests import hl7_messages as m
from tests.factories import person, roster_file
from tests.tasks.test_open_slots import LOCATION, NOON, PROVIDER, TOMORROW_10, add

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _latest_run(flow_name: str) -> FlowRun:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=20,
        )
    return max(runs, key=lambda r: r.created or dt.datetime.min.replace(tzinfo=dt.UTC))


def _artifacts(*, key: str | None = None, run: UUID | None = None) -> list[Artifact]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]) if key else None,
                flow_run_id=ArtifactFilterFlowRunId(any_=[run]) if run else None,
            )
        )


def _named(run: FlowRun, prefix: str, *, minutes: bool = False) -> bool:
    """`run.name` is `prefix` then " · " and the day ("1 Dec 2026"), and the time if asked."""
    when = r"\d{1,2} [A-Z][a-z]{2} \d{4}" + (r" \d{2}:\d{2}" if minutes else "")
    return re.fullmatch(re.escape(prefix) + " · " + when, run.name) is not None


def _data(key: str) -> str:
    """The data of the latest artifact under `key`."""
    found = sorted(_artifacts(key=key), key=lambda a: a.created or dt.datetime.min)
    assert found, f"no artifact {key}"
    return str(found[-1].data)


def test_keys_and_slugs_are_lowercase_letters_digits_and_dashes() -> None:
    assert slug("Dr. Lée / Main St #2") == "dr-lee-main-st-2"
    assert artifact_key("roster-import-report", "Dr. Lee", "Main St") == (
        "roster-import-report-dr-lee-main-st"
    )


def test_roster_run_is_named_tagged_and_its_report_reconciles(db: Engine, tmp_path: Path) -> None:
    rows = [person(1), person(2), person(3), person(4, email="nope"), person(1)]
    path = roster_file(tmp_path / "roster.csv", rows)
    summary = roster_sync(str(path), "Dr. Lee", "Main St", mode="invite")
    # One row fails validation (stage), one repeats client 1 (found at apply).
    assert (summary["total_rows"], summary["accepted"], summary["rejected"]) == (5, 3, 2)

    run = _latest_run("roster-sync")
    assert _named(run, "roster-sync · Dr. Lee / Main St · invite")
    assert {"provider:dr-lee", "source:csv", "source:cli"} <= set(run.tags)
    assert "roster.csv" not in run.name

    report = _data("roster-import-report-dr-lee-main-st")
    assert "Roster import: Dr. Lee / Main St" in report
    assert "| validation (stage: each row against the file's rules) | 1 |" in report
    assert "| apply (duplicates within the file, clients already Approved) | 1 |" in report
    assert "| **total rejected** | **2** |" in report
    assert "accepted 3 + rejected 2 = 5 of 5 input rows" in report
    durations = report.split("## Durations", 1)[1]  # this run's steps, as they ran
    steps = re.findall(r"^\| ([a-z-]+)-\w+ \| \d+\.\d\d \|$", durations, re.M)
    assert steps == ["start-roster-import", "stage-roster", "apply-roster"]
    assert re.search(r"^\| run so far \| \d+\.\d\d \|$", durations, re.M)
    table = json.loads(_data("roster-import-counts-dr-lee-main-st"))
    assert table[0]["rejected_at_validation"] == 1 and table[0]["rejected_at_apply"] == 1

    # A second provider keeps its own history under its own key.
    roster_sync(str(path), "Dr. Ng", "North", mode="invite")
    assert "Dr. Ng / North" in _data("roster-import-report-dr-ng-north")
    assert "Dr. Lee / Main St" in _data("roster-import-report-dr-lee-main-st")

    progress = [a for a in _artifacts(run=run.id) if a.type == "progress"]
    assert [a.data for a in progress] == [100.0]


def test_drop_runs_say_where_the_file_came_from(db: Engine, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    roster_file(drop / "roster" / "Dr. Drop" / "Clinic" / "tonight.csv", [person(1)])
    assert len(roster_drop(str(drop))["imported"]) == 1
    parent, child = _latest_run("roster-drop"), _latest_run("roster-sync")
    assert _named(parent, "roster-drop") and "source:drop" in parent.tags
    assert _named(child, "roster-sync · Dr. Drop / Clinic · sync")
    assert {"provider:dr-drop", "source:csv", "source:drop"} <= set(child.tags)
    assert "source:cli" not in child.tags


def test_hl7_dispatch_and_resend_runs_publish_reports(db: Engine, tmp_path: Path) -> None:
    feed = tmp_path / "feed.hl7"
    feed.write_text("\r".join([m.EPIC_A04, m.EPIC_A04.replace("EPC0001", "EPC0009")[:40]]))
    counts = hl7_import([str(feed)])
    run = _latest_run("hl7-import")
    assert _named(run, "hl7-import · 1 path", minutes=True) and "source:hl7" in run.tags
    report = _data("hl7-import-report")
    assert f"| applied | {counts['applied']} |" in report
    assert f"| errors | {counts['errors']} |" in report
    assert json.loads(_data("hl7-import-counts"))[0]["messages"] == counts["messages"]
    assert [a.data for a in _artifacts(run=run.id) if a.type == "progress"] == [100.0]

    roster_sync(str(roster_file(tmp_path / "r.csv", [person(1)])), "Dr. Mail", "Main")
    sent = dispatch()
    assert _named(_latest_run("dispatch"), "dispatch", minutes=True)
    assert f"| sent | {sent['sent']} |" in _data("dispatch-report")
    assert json.loads(_data("dispatch-counts"))[0]["sent"] == sent["sent"]

    invitation_resend(as_of="2030-01-01", provider="Dr. Mail", dry_run=True)
    resend = _latest_run("invitation-resend")
    assert _named(resend, "invitation-resend · Dr. Mail · as of 1 Jan 2030 · dry run")
    assert "provider:dr-mail" in resend.tags
    assert "| Dr. Mail |" in _data("invitation-resend-report")
    assert json.loads(_data("invitation-resend-counts"))[0]["provider"] == "Dr. Mail"


def _events(resource_id: str, known: int = 0, wanted: str | None = None) -> list[dict[str, Any]]:
    """The events Prefect stored for a resource (its database: the harness's SQLite file),
    waiting for more than `known` (ids repeat across the two databases of one test run) and,
    with `wanted`, for an event of that name (the server persists events in batches: a run's
    state events can be stored before its heartbeat)."""
    import sqlite3
    import time

    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    EventsWorker.drain_all(timeout=10)
    path = PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1]
    deadline = time.monotonic() + 15  # the server persists events in batches
    while True:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT event, resource, payload FROM events WHERE resource_id = ?",
                (resource_id,),
            ).fetchall()
        arrived = len(rows) > known and (wanted is None or any(e == wanted for e, _, _ in rows))
        if arrived or time.monotonic() > deadline:
            return [{"event": e, "resource": json.loads(r), "payload": p} for e, r, p in rows]
        time.sleep(0.3)


def test_opening_a_slot_emits_its_id_and_the_alerts_run_queues_nothing_twice(
    db: Engine,
) -> None:
    known = len(_events("openslots.slot.1", known=-1))
    with frozen_clock(NOON):
        add(db, 1)
        opened = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
        assert opened["alerts_queued"] == 1
        with db.connect() as conn:
            before = conn.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
        # What the trigger runs after the CLI/API already queued the offers: nothing new.
        again = open_slot_alerts(slot_id=opened["slot_id"])
        assert (again["offers_sent"], again["messages"]) == (0, 0)
        assert open_slot_alerts()["messages"] == 0
        with db.connect() as conn:
            after = conn.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    assert before == after == 2
    run = _latest_run("open-slot-alerts")
    assert _named(run, "open-slot-alerts · every due slot", minutes=True)
    assert "| offers sent | 0 |" in _data("open-slot-alerts-report")

    assert opened["slot_id"] == 1
    events = _events("openslots.slot.1", known)[known:]
    assert [e["event"] for e in events] == ["openslots.slot.opened"]
    assert events[0]["resource"] == {
        "prefect.resource.id": f"openslots.slot.{opened['slot_id']}",
        "openslots.slot.id": str(opened["slot_id"]),
    }
    assert events[0]["payload"] in ("{}", None)


def test_hl7_opened_slot_emits_its_event(db: Engine, tmp_path: Path) -> None:
    from openslots.connectors.database.models import Slot
    from tests.flows.test_open_slots_flow import FEED_TIME, booked_then_cancelled

    known = {n: len(_events(f"openslots.slot.{n}", known=-1)) for n in (1, 2)}

    first, cancel = booked_then_cancelled(tmp_path)
    with frozen_clock(FEED_TIME):
        hl7_import([str(first)])
        assert hl7_import([str(cancel)])["slots_opened"] == 1
    with db.connect() as conn:
        slot_id = conn.execute(select(Slot.id).where(Slot.status == "open")).scalar_one()
    events = _events(f"openslots.slot.{slot_id}", known[slot_id])[known[slot_id] :]
    assert [e["event"] for e in events] == ["openslots.slot.opened"]


def test_trigger_passes_the_slot_id_from_the_event_as_an_int() -> None:
    """The deployment trigger's parameters rendered as Prefect's RunDeployment action does."""
    from prefect.events import Event
    from prefect.server.events.actions import RunDeployment
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    from openslots.events import SLOT_OPENED, slot_resource
    from openslots.serve import deployments, slot_opened_trigger
    from openslots.settings import get_settings

    trigger = slot_opened_trigger()
    assert trigger.expect == {SLOT_OPENED}
    params = copy.deepcopy(trigger.parameters)
    RunDeployment._upgrade_v1_templates(params)
    event = Event(event=SLOT_OPENED, resource=slot_resource(42))
    context = HydrationContext(render_jinja=True, jinja_context={"event": event})
    assert hydrate(params, context) == {"slot_id": 42}
    served = {d.name: d for d in deployments(get_settings())}
    assert served["open-slot-alerts"].triggers == [trigger]


def test_prefect_yaml_ends_with_the_same_open_slot_alerts_trigger() -> None:
    import yaml
    from prefect.events import DeploymentEventTrigger

    from openslots.serve import slot_opened_trigger

    config = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
    deployment = config["deployments"][-1]
    assert deployment["name"] == "open-slot-alerts"
    assert deployment["entrypoint"] == "openslots/flows/open_slot_alerts.py:open_slot_alerts"
    (trigger,) = deployment["triggers"]
    served = slot_opened_trigger()
    declared = DeploymentEventTrigger(**trigger)
    for name in ("expect", "match", "for_each", "parameters", "posture", "threshold"):
        assert getattr(declared, name) == getattr(served, name), name


def test_emitting_without_a_prefect_api_skips_without_importing_prefect(tmp_path: Path) -> None:
    probe = (
        "import sys, json; from openslots.events import slots_opened; "
        "print(json.dumps([slots_opened([1, 2]), 'prefect' in sys.modules]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(done.stdout) == [0, False]
