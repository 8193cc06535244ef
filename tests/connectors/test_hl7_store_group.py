"""An MLLP group's store on both databases: `store_group` (one statement on PostgreSQL) decides
every message as `store_messages` does, for any sequence of groups (redeliveries inside a
group and across groups, reused control ids, empty control ids); a statement that dies
mid-group leaves nothing of the group behind."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, delete, insert, select, text

from openslots.connectors.database import hl7_store as store
from openslots.connectors.database.hl7_store import Incoming, Saved
from openslots.connectors.database.models import Hl7Message

# A small pool of identities and contents, so that groups repeat them: (application,
# facility, control id); an empty control id is never a redelivery.
IDENTITIES = [
    ("EPIC", "NORTH", "C1"),
    ("EPIC", "NORTH", "C2"),
    ("EPIC", "SOUTH", "C1"),
    ("CERNER", "NORTH", "C1"),
    ("EPIC", "NORTH", ""),
]
CONTENTS = [b"MSH|one", b"MSH|two", b"MSH|three"]


def incoming(identity: int, content: int, error: bool = False) -> Incoming:
    raw = CONTENTS[content] + b"|" + "^".join(IDENTITIES[identity]).encode()
    return Incoming(
        raw=raw,
        identity=IDENTITIES[identity],
        content_hash=hashlib.sha256(raw).hexdigest(),
        message_type="ADT^A04",
        error="PID-3 is required" if error else None,
    )


def stored_rows(conn: Connection) -> list[tuple[object, ...]]:
    rows = conn.execute(
        select(
            Hl7Message.id,
            Hl7Message.sending_application,
            Hl7Message.sending_facility,
            Hl7Message.control_id,
            Hl7Message.message_type,
            Hl7Message.content_hash,
            Hl7Message.raw,
            Hl7Message.source,
            Hl7Message.status,
            Hl7Message.error,
            Hl7Message.control_id_reused,
        ).order_by(Hl7Message.id)
    )
    return [tuple(row) for row in rows]


def normalised(
    answers: list[list[Saved]], rows: list[tuple[object, ...]]
) -> tuple[list[list[tuple[int, bool, bool]]], list[tuple[object, ...]]]:
    """Answers and rows with each id replaced by its row's rank (the two runs' ids differ)."""
    rank = {row[0]: n for n, row in enumerate(rows)}
    return (
        [
            [(rank[s.message_id], s.duplicate, s.control_id_reused) for s in group]
            for group in answers
        ],
        [(rank[row[0]], *row[1:]) for row in rows],
    )


def run(db: Engine, groups: Sequence[Sequence[Incoming]], grouped: bool) -> tuple[object, ...]:
    """Store the groups one after another on an emptied table: by `store_group`, or by the
    reference `store_messages` in one transaction per group."""
    with db.begin() as conn:
        conn.execute(delete(Hl7Message))
    answers = []
    with db.connect() as conn:
        for group in groups:
            if grouped:
                answers.append(store.store_group(conn, group, "mllp"))
            else:
                with conn.begin():
                    answers.append(store.store_messages(conn, group, "mllp"))
    with db.connect() as conn:
        return normalised(answers, stored_rows(conn))


message = st.builds(
    incoming,
    st.integers(0, len(IDENTITIES) - 1),
    st.integers(0, len(CONTENTS) - 1),
    st.booleans(),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.lists(message, min_size=1, max_size=8), min_size=1, max_size=4))
def test_a_group_is_decided_as_store_messages_decides(
    db: Engine, groups: list[list[Incoming]]
) -> None:
    assert run(db, groups, grouped=True) == run(db, groups, grouped=False)


def test_redeliveries_inside_a_group_and_across_groups(db: Engine) -> None:
    first = [incoming(0, 0), incoming(1, 0), incoming(0, 0), incoming(0, 1), incoming(4, 0)]
    second = [incoming(0, 0), incoming(4, 0), incoming(1, 2), incoming(2, 0)]
    with db.connect() as conn:
        one = store.store_group(conn, first, "mllp")
        two = store.store_group(conn, second, "mllp")
    assert [(s.duplicate, s.control_id_reused) for s in one] == [
        (False, False),
        (False, False),
        (True, False),  # the first message again, in the same group
        (False, True),  # C1 again with other content: stored, its control id reused
        (False, False),  # no control id: never a redelivery
    ]
    assert one[2].message_id == one[0].message_id
    new_ids = [one[n].message_id for n in (0, 1, 3, 4)]
    assert new_ids == sorted(new_ids)  # ids ascend with the group's order
    assert [(s.duplicate, s.control_id_reused) for s in two] == [
        (True, False),  # a redelivery of a message stored by the group before
        (False, False),
        (False, True),
        (False, False),  # another facility's C1 is another message
    ]
    assert two[0].message_id == one[0].message_id
    with db.connect() as conn:
        assert len(stored_rows(conn)) == 7


def _wait_until_blocked(db: Engine, pid: int, failure: str) -> None:
    """Until the backend `pid` waits on a lock (bounded: 15 s, then the test fails)."""
    with db.connect() as watcher:
        waiting = text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p")
        deadline = time.monotonic() + 15
        while not watcher.execute(waiting, {"p": pid}).scalar():
            assert time.monotonic() < deadline, failure
            time.sleep(0.02)


def test_a_statement_that_dies_mid_group_stores_nothing_of_it(db: Engine) -> None:
    """Another transaction holds (uncommitted) the id the group's second new row will take, so
    the group's INSERT stops there, its first row written; then its connection is terminated:
    the store raises (the listener answers AR) and none of the group is stored."""
    if db.dialect.name != "postgresql":
        pytest.skip("a statement to terminate: PostgreSQL (SQLite stores in-process)")
    group = [incoming(n, 0) for n in range(4)]
    failed: list[BaseException] = []
    with db.connect() as blocker, db.connect() as writer:
        pid = writer.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        writer.rollback()
        taken = blocker.execute(
            text("SELECT nextval(pg_get_serial_sequence('hl7_messages', 'id'))")
        ).scalar_one()
        held = incoming(0, 2)
        blocker.execute(
            insert(Hl7Message).values(
                id=taken + 2,
                content_hash=held.content_hash,
                raw=held.raw,
                source="mllp",
            )
        )

        def store_it() -> None:
            try:
                store.store_group(writer, group, "mllp")
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=store_it)
        thread.start()
        _wait_until_blocked(db, pid, "the group's insert never waited")
        with db.connect() as watcher:
            watcher.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        thread.join(15)
        blocker.rollback()
        writer.invalidate()
    assert failed and not thread.is_alive()
    with db.connect() as conn:
        assert stored_rows(conn) == []


@pytest.mark.parametrize("path", ["store_group", "store_messages"])
def test_a_message_another_writer_stores_meanwhile_is_a_redelivery_not_a_second_row(
    db: Engine, path: str
) -> None:
    """The other writer (a file drop, another listener) has inserted the message and not yet
    committed when this one stores it: this one's lookup cannot see that row, its insert waits
    on the unique identity, and once the other commits it answers a redelivery of that row."""
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: the lookup always sees the other's row")
    message, other = incoming(0, 0), incoming(1, 1)
    answered: list[list[Saved]] = []
    failed: list[BaseException] = []
    with db.connect() as first, db.connect() as second:
        pid = second.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        second.rollback()
        (theirs,) = store.store_messages(first, [message], "file")  # not committed yet

        def store_it() -> None:
            try:
                if path == "store_group":
                    answered.append(store.store_group(second, [other, message], "mllp"))
                else:
                    with second.begin():
                        answered.append(store.store_messages(second, [other, message], "mllp"))
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=store_it)
        thread.start()
        _wait_until_blocked(db, pid, "the second writer never waited")
        first.commit()
        thread.join(timeout=15)
    assert not failed, failed
    (saved,) = answered
    assert saved[1] == Saved(theirs.message_id, duplicate=True)
    assert not saved[0].duplicate
    with db.connect() as conn:
        identities = [(row[3], row[5]) for row in stored_rows(conn)]
    assert sorted(identities) == sorted(
        [(message.identity[2], message.content_hash), (other.identity[2], other.content_hash)]
    )
