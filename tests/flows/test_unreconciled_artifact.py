"""The dispatch flow's daily artifact (issue #15): the count of claimed slots not reconciled
into the EHR per provider, published once a day, with no patient data."""

from __future__ import annotations

import datetime as dt

import pytest
from prefect.artifacts import Artifact
from sqlalchemy import Engine

from openslots.domain.clock import frozen_clock
from openslots.flows.dispatch import dispatch
from openslots.tasks.reconcile import ARTIFACT_KEY
from tests.flows.test_flows import _prefect_text
from tests.tasks.test_reconcile import NOON, claimed_slot

pytestmark = pytest.mark.usefixtures("prefect_harness")


def latest() -> tuple[str | None, str | None]:
    found = Artifact.get(ARTIFACT_KEY, _sync=True)  # type: ignore[call-arg]
    return getattr(found, "description", None), getattr(found, "data", None)


def test_dispatch_publishes_the_unreconciled_count_once_a_day(db: Engine) -> None:
    # One Prefect server serves the whole run: each database gets its own days.
    start = NOON + dt.timedelta(days=10 if db.dialect.name == "sqlite" else 20)
    with frozen_clock(start) as clock:
        claimed_slot(db, f"{start.date() + dt.timedelta(days=1)}T10:00")
        clock.advance(dt.timedelta(hours=4))
        dispatch()
        day = clock.now().date().isoformat()
        description, data = latest()
        assert description == f"unreconciled claimed slots per provider, {day}"
        assert data is not None and "| Dr. Slot | 1 |" in data
        clock.advance(dt.timedelta(hours=1))
        dispatch()  # the same day: not published again
        assert latest() == (description, data)
        clock.advance(dt.timedelta(days=1))
        dispatch()
        assert latest()[0] == f"unreconciled claimed slots per provider, {clock.now().date()}"
    stored = _prefect_text()
    assert [s for s in ("Pat1", "pat1@example.org", "+14155550001") if s in stored] == []
