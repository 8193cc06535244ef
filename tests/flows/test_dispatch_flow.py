"""The dispatch flow under Prefect's harness: a retried flow run sends nothing twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine

from openslots.flows.dispatch import dispatch
from openslots.tasks.dispatch import DispatchCounts
from tests.factories import person, roster_file
from tests.smtp_server import SmtpSink
from tests.tasks._dispatch import use_smtp
from tests.tasks.test_roster_import import run_import

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_prefect_retry_of_the_dispatch_flow_sends_nothing_extra(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_import(roster_file(tmp_path / "r.csv", [person(n, mobile_phone="") for n in range(1, 21)]))
    results: list[dict[str, object]] = []
    as_dict = DispatchCounts.as_dict

    def fail_after_sending_once(counts: DispatchCounts) -> dict[str, object]:
        results.append(as_dict(counts))
        if len(results) == 1:
            raise RuntimeError("the flow run dies after its messages went out")
        return as_dict(counts)

    monkeypatch.setattr(DispatchCounts, "as_dict", fail_after_sending_once)
    with SmtpSink() as sink:
        use_smtp(monkeypatch, sink)
        final = dispatch.with_options(retries=1, retry_delay_seconds=0)()
    first, second = results
    assert (first["materialised"], first["sent"]) == (20, 20)
    assert (second["materialised"], second["claimed"], second["sent"]) == (0, 0, 0)
    assert final == second
    assert Counter(sink.recipients()) == {f"client{n}@example.org": 1 for n in range(1, 21)}
