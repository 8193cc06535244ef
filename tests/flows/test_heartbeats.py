"""A sync flow run still sends Prefect's heartbeat events (zombie-run detection reads them)
with openslots' heartbeat loop, and its heartbeat thread ends with the run."""

from __future__ import annotations

import threading

import pytest
from prefect import flow, flow_engine

from openslots.flows import _heartbeats
from tests.flows.test_run_reports import _events

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow(name="heartbeat-check", persist_result=False)
def _threads_during_a_run() -> list[str]:
    return [thread.name for thread in threading.enumerate()]


def test_a_flow_run_sends_its_heartbeat_and_its_thread_ends_with_it() -> None:
    assert flow_engine._send_heartbeats is _heartbeats.send_heartbeats  # installed by flows/

    state = _threads_during_a_run(return_state=True)

    assert _heartbeats.THREAD_NAME in state.result()
    assert _heartbeats.THREAD_NAME not in [t.name for t in threading.enumerate()]
    run_id = state.state_details.flow_run_id
    events = _events(f"prefect.flow-run.{run_id}", wanted="prefect.flow-run.heartbeat")
    assert "prefect.flow-run.heartbeat" in [e["event"] for e in events]
