"""A file drop's counts add up: every message of the files is applied, a duplicate, ignored
or an error, exactly once (applied + duplicates + ignored + errors == messages), whether
ingest uses the receipt's readings or reads every message again, over several ingest batches,
and when the same files come again. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from benchmarks.hl7_ingest import generate_messages
from openslots.connectors.database.models import Base
from openslots.domain.clock import frozen_clock
from openslots.tasks.hl7 import RECEIPTS, ingest_stored, store_files
from tests import hl7_messages as m

GENERATED = 120
BATCH = 45  # several ingest batches, none aligned with a file or a provider's group


def drop(directory: Path) -> int:
    """Three files of a feed with every outcome; returns how many are redeliveries."""
    generated = [g.decode() for g in generate_messages(GENERATED, seed=11)]
    # The same control id with other content: stored again, flagged, applied.
    reused = generated[10].replace(" Main St", " Oak St")
    # The same patient again later: the later message wins, the earlier is applied through it.
    later = m.EPIC_A04.replace("EPC0001", "EPC0002").replace("ines.n@", "ines.later@")
    no_mrn = m.EPIC_A04.replace("E1001^^^NORTH^MR~999-00-1111^^^SSA^SS", "").replace(
        "EPC0001", "EPC0003"
    )  # AE on receipt
    files = {
        "a.hl7": generated[:60],
        # 20 messages of a.hl7 sent again (redeliveries), a discharge (ignored), two more ADT.
        "b.hl7": [
            *generated[60:],
            *generated[40:60],
            m.DISCHARGE_A03,
            reused,
            m.EPIC_A04,
            later,
        ],
        # Junk before the first MSH (AR), one message twice in a file, a merge, schedules,
        # warnings, a patient without MRN.
        "c.hl7": [
            "not a message",
            m.CERNER_A08,
            m.CERNER_A08,
            m.MERGE_A40,
            *m.ALL_SIU,
            m.JUNK_CONTACT_A08,
            no_mrn,
        ],
    }
    directory.mkdir()
    for name, messages in files.items():
        (directory / name).write_text("\r".join(messages), encoding="utf-8")
    return 20 + 1


def imported(directory: Path, *, handover: bool) -> dict[str, Any]:
    """What `hl7_import` returns, from its two tasks (composed as the flow composes them)."""
    stored = store_files.fn([str(directory)])
    if not handover:
        RECEIPTS.clear()
    applied = ingest_stored.fn()
    counts = applied.as_dict()
    counts |= {"messages": stored.messages, "duplicates": stored.duplicates}
    counts["errors"] += stored.errors
    return counts


def accounted(counts: dict[str, Any]) -> int:
    return int(counts["applied"] + counts["duplicates"] + counts["ignored"] + counts["errors"])


def statuses(db: Engine) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM hl7_messages GROUP BY status"))
        return {str(status): int(n) for status, n in rows}


def empty(db: Engine) -> None:
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def test_every_message_of_a_drop_is_counted_once(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_HL7_BATCH_SIZE", str(BATCH))
    redelivered = drop(tmp_path / "drop")
    runs = []
    with frozen_clock(dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)):
        for handover in (True, False):
            counts = imported(tmp_path / "drop", handover=handover)
            assert counts["messages"] == GENERATED + 20 + 4 + 11
            assert counts["duplicates"] == redelivered
            assert accounted(counts) == counts["messages"]
            assert counts["applied"] > GENERATED and counts["ignored"] and counts["errors"] >= 2
            found = statuses(db)
            assert sum(found.values()) == counts["messages"] - redelivered
            assert found["applied"] == counts["applied"]
            assert found["ignored"] == counts["ignored"]
            assert found["error"] == counts["errors"]
            # The same files again: all redeliveries but the junk, which has no identity.
            again = imported(tmp_path / "drop", handover=handover)
            assert again["duplicates"] == again["messages"] - 1
            assert again["applied"] == 0 and again["errors"] == 1
            assert accounted(again) == again["messages"]
            runs.append((counts, again))
            empty(db)
    assert runs[0] == runs[1]  # the readings change nothing that is counted
