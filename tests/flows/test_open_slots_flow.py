"""Open Slots through the flows under Prefect's harness (an SIU^S15 opens and offers a slot,
dispatch sends the offers), and nothing about the patients offered reaches Prefect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from openslots.connectors.database.models import Location, OutboxMessage, Provider
from openslots.domain.clock import frozen_clock
from openslots.flows.dispatch import dispatch
from openslots.flows.hl7_ingest import hl7_import
from tests import hl7_messages as m
from tests.flows.test_flows import _prefect_text
from tests.tasks.test_open_slots import add

pytestmark = pytest.mark.usefixtures("prefect_harness")

FEED_TIME = dt.datetime(2026, 11, 26, 17, 40, tzinfo=dt.UTC)
SECRETS = ("Pat71", "pat71@example.org", "+14155550071", "M-QZ8812")


def booked_then_cancelled(folder: Path) -> tuple[Path, Path]:
    """Two HL7 files: an S12 that books a time, then the S15 that cancels it (opens a slot)."""
    first = folder / "first.hl7"
    first.write_text(m.siu("S12", "APT0", "202612011500", "SIU-0"))
    cancel = folder / "cancel.hl7"
    cancel.write_text(m.SIU_S15_CANCELLED)
    return first, cancel


def test_no_patient_data_from_open_slots_reaches_prefect(db: Engine, tmp_path: Path) -> None:
    first, cancel = booked_then_cancelled(tmp_path)
    with frozen_clock(FEED_TIME):
        hl7_import([str(first)])
        with db.connect() as conn:
            provider, location = conn.execute(
                select(Provider.name, Location.name).join(
                    Location, Location.provider_id == Provider.id
                )
            ).one()
        add(db, 71, mrn=SECRETS[3], provider=provider, location=location)
        counts = hl7_import([str(cancel)])
        assert counts["slots_opened"] == 1
        sent = dispatch()
    assert (sent["sent"], sent["by_channel"]) == (2, {"email": 1, "sms": 1})
    with db.connect() as conn:
        keys = set(conn.execute(select(OutboxMessage.idempotency_key)).scalars())
    assert keys == {"offer:1:email", "offer:1:sms"}
    stored = _prefect_text()
    assert [value for value in SECRETS if value in stored] == []
