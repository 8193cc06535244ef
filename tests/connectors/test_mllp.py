"""The MLLP listener on a loopback port: the transport alone with an in-memory handler (replies
in order, group hand-over, refusal), then with the real store-then-ACK handler: ACK codes, split
frames, many connections, bad input, redeliveries inside one group, no AA for a group whose store
dies midway, and no acknowledged message lost when it is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, text

from openslots.connectors.database.models import Client, Hl7Message
from openslots.connectors.hl7.mllp import MllpListener, Reply
from openslots.resources import resources
from openslots.tasks.hl7 import ingest_all
from openslots.tasks.hl7_receive import StoreThenAck
from tests import hl7_messages as m
from tests.mllp_client import START, ack_code, frame, read_ack, send


@pytest.fixture
def listener(db: Engine, monkeypatch) -> Iterator[MllpListener]:
    monkeypatch.setenv("OPENSLOTS_HL7_BATCH_SECONDS", "0.2")
    res = resources()
    settings = res.settings
    server = MllpListener(
        StoreThenAck(res.engine, settings.hl7_assigning_authority),
        "127.0.0.1",
        0,
        on_batch=lambda: ingest_all(settings),
        batch_size=settings.hl7_batch_size,
        batch_seconds=settings.hl7_batch_seconds,
    )
    with serving(server):
        yield server


@contextlib.contextmanager
def serving(server: MllpListener) -> Iterator[MllpListener]:
    """The listener on its own event loop in a thread, until the block ends."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(server.serve())

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _wait_until_ready(server.ready.is_set, thread.is_alive, "the MLLP listener")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=10)


def _wait_until_ready(
    ready: Callable[[], bool], alive: Callable[[], bool], what: str, seconds: float = 15
) -> None:
    """Bounded: a listener that never becomes ready fails the test here, not in a later send."""
    deadline = time.monotonic() + seconds
    while not ready():
        if not alive() and not ready():  # ready() again: it may have just become ready, then ended
            pytest.fail(f"{what} stopped before it was ready to accept connections")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not ready to accept connections after {seconds:g} s")
        time.sleep(0.02)


class InMemoryHandler:
    """A handler with no database: answers each message with its own text, records each group,
    and can hold a group (to let others queue behind it) or fail one (to see the refusal)."""

    def __init__(self, fail_call: int | None = None) -> None:
        self.groups: list[list[bytes]] = []
        self.fail_call = fail_call
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def handle(self, raws: list[bytes]) -> list[Reply]:
        self.entered.set()
        assert self.gate.wait(30)
        self.groups.append(list(raws))
        if len(self.groups) == self.fail_call:
            raise RuntimeError("the store is down")
        return [Reply(b"MSA|AA|" + raw, "AA", new=not raw.startswith(b"OLD")) for raw in raws]

    def refuse(self, raw: bytes) -> Reply:
        return Reply(b"MSA|AR|" + raw, "AR")


def _until(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:g} s")
        time.sleep(0.01)


def test_transport_answers_every_message_with_its_own_reply_in_order() -> None:
    handler = InMemoryHandler()
    handed_over = threading.Event()
    server = MllpListener(
        handler, "127.0.0.1", 0, on_batch=handed_over.set, batch_size=30, batch_seconds=3600
    )
    with serving(server), ThreadPoolExecutor(4) as pool:
        senders = [[f"S{n}-M{i}" for i in range(10)] for n in range(4)]
        replies = list(pool.map(lambda texts: send(server.port, list(texts)), senders))
        assert replies == [[f"MSA|AA|{text}" for text in texts] for texts in senders]
        assert handed_over.wait(10)  # 40 new messages >= batch_size, long before batch_seconds
        assert send(server.port, ["OLD-1"], split=3) == ["MSA|AA|OLD-1"]
    handled = [raw for group in handler.groups for raw in group]
    assert sorted(handled) == sorted([b"OLD-1", *(t.encode() for texts in senders for t in texts)])
    assert all(1 <= len(group) <= 4 for group in handler.groups)  # one waiting per connection
    assert server.stats.received == 41
    assert server.stats.acked == {"AA": 41, "AE": 0, "AR": 0}
    assert server.stats.connections == 5
    assert server.stats.batches == 1


def test_transport_refuses_a_whole_group_when_the_handler_fails_and_keeps_connections() -> None:
    handler = InMemoryHandler(fail_call=2)
    server = MllpListener(handler, "127.0.0.1", 0)
    with serving(server), contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            for _ in range(5)
        ]
        handler.gate.clear()  # hold the first group so that the next four queue behind it
        socks[0].sendall(frame("FIRST"))
        assert handler.entered.wait(10)
        for n, sock in enumerate(socks[1:], 1):
            sock.sendall(frame(f"QUEUED-{n}"))
        _until(lambda: server.stats.received == 5, "queueing four messages")
        handler.gate.set()
        assert read_ack(socks[0]) == "MSA|AA|FIRST"
        assert [read_ack(sock) for sock in socks[1:]] == [f"MSA|AR|QUEUED-{n}" for n in range(1, 5)]
        assert sorted(handler.groups[1]) == [f"QUEUED-{n}".encode() for n in range(1, 5)]
        for n, sock in enumerate(socks[1:], 1):  # every connection is still usable: send again
            sock.sendall(frame(f"QUEUED-{n}"))
            assert read_ack(sock) == f"MSA|AA|QUEUED-{n}"
    assert server.stats.acked == {"AA": 5, "AE": 0, "AR": 4}


def stored(db: Engine) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(Hl7Message)).scalar_one()


def test_ack_codes_and_many_messages_on_one_connection(listener: MllpListener, db: Engine) -> None:
    no_mrn = m.EPIC_A04.replace("E1001^^^NORTH^MR~999-00-1111^^^SSA^SS", "").replace(
        "EPC0001", "EPC0099"
    )
    acks = send(
        listener.port,
        [m.EPIC_A04, m.SIU_S15_CANCELLED, no_mrn, "not hl7 at all", m.EPIC_A04, m.LATIN1_A04],
    )
    assert [ack_code(a) for a in acks] == ["AA", "AA", "AE", "AR", "AA", "AA"]
    assert "MSA|AA|EPC0001" in acks[0]
    error_segment = next(s for s in acks[2].split("\r") if s.startswith("ERR"))
    assert error_segment.startswith("ERR||PID^1^3|101^^HL70357|E")
    assert "Inés" not in acks[2]
    assert stored(db) == 5  # the redelivered A04 (5th) was recognised, not stored again
    for _ in range(100):  # the batcher hands stored messages to ingest
        with db.connect() as conn:
            if conn.execute(select(func.count()).select_from(Client)).scalar_one() == 2:
                break
        time.sleep(0.1)
    with db.connect() as conn:
        refs = set(conn.execute(select(Client.client_ref)).scalars())
    assert refs == {"E1001", "W6006"}


def test_python_hl7_client_talks_to_the_listener(listener: MllpListener) -> None:
    from hl7.client import MLLPClient

    with MLLPClient("127.0.0.1", listener.port) as client:
        replies = [client.send_message(text) for text in (m.EPIC_A04, m.SIU_S12_BOOKED)]
    assert [ack_code(reply.decode()[1:-2]) for reply in replies] == ["AA", "AA"]


def test_frames_split_across_reads_and_junk_between_frames(listener: MllpListener) -> None:
    acks = send(listener.port, [m.EPIC_A04, m.MERGE_A40], split=7)
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(b"\x00\xffnoise" + frame(m.CERNER_A08) + b"trailing junk")
        assert ack_code(read_ack(sock)) == "AA"
        sock.sendall(START + b"MSH|^~\\&|TRUNCATED")  # a frame that never ends...
    acks = send(listener.port, [m.MEDITECH_A28_MINOR])  # ...harms no one else
    assert ack_code(acks[0]) == "AA"


def test_concurrent_connections(listener: MllpListener, db: Engine) -> None:
    def sender(n: int) -> list[str]:
        messages = [
            m.EPIC_A04.replace("EPC0001", f"C{n}-{i}").replace("E1001", f"P{n}x{i}")
            for i in range(25)
        ]
        return [ack_code(a) for a in send(listener.port, messages)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(sender, range(8)))
    assert all(codes == ["AA"] * 25 for codes in results)
    assert stored(db) == 200


def test_a_killed_listener_loses_no_acknowledged_message(db: Engine, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    process = subprocess.Popen(
        [sys.executable, "-m", "openslots.cli", "hl7", "listen", "--port", "0", "--no-ingest"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ports: list[int] = []
        assert process.stderr is not None
        stderr = process.stderr

        def watch() -> None:  # stderr is read on a thread so that the wait below is bounded
            for line in stderr:
                found = re.search(r"listening for MLLP on [\d.]+:(\d+)", line)
                if found:
                    ports.append(int(found.group(1)))
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _wait_until_ready(lambda: bool(ports), watcher.is_alive, "`openslots hl7 listen`", 60)
        port = ports[0]
        messages = [m.EPIC_A04.replace("EPC0001", f"K{i}") for i in range(40)]
        acks = send(port, messages)
        assert all(ack_code(a) == "AA" for a in acks)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    with db.connect() as conn:
        ids = set(conn.execute(select(Hl7Message.control_id)).scalars())
    assert ids == {f"K{i}" for i in range(40)}


def test_a_frame_ending_without_the_final_carriage_return_is_acknowledged(
    listener: MllpListener,
) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(START + m.EPIC_A04.encode() + b"\x1c")  # no 0x0D, as some senders do
        assert ack_code(read_ack(sock)) == "AA"
        sock.sendall(frame(m.CERNER_A08))  # and the connection goes on
        assert ack_code(read_ack(sock)) == "AA"


def test_control_characters_in_a_frame_are_never_echoed_into_the_ack(
    listener: MllpListener,
) -> None:
    """A start block inside the control id: the AE quotes the id without it, so the reply is
    one well-formed frame."""
    message = m.EPIC_A04.replace("EPC0001", "EPC\x0b00\x1c01").encode()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(START + message + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            reply += sock.recv(65536)
    body = reply[1:-2]
    assert reply[:1] == START and not any(c < 0x20 and c != 0x0D for c in body), reply


class GatedStoreThenAck(StoreThenAck):
    """The real handler, with every group recorded and the first one held at a gate (so that
    the other connections' messages queue behind it and are stored as one group)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.groups: list[list[bytes]] = []
        self.replies: list[list[Reply]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def handle(self, raws: list[bytes]) -> list[Reply]:
        self.entered.set()
        assert self.gate.wait(30)
        self.groups.append(list(raws))
        replies = super().handle(raws)
        self.replies.append(replies)
        return replies


def control_ids(db: Engine) -> set[str]:
    with db.connect() as conn:
        return set(conn.execute(select(Hl7Message.control_id)).scalars())


def test_group_commit_stores_many_connections_at_once_and_acks_after_the_commit(
    db: Engine,
) -> None:
    handler = GatedStoreThenAck(db)
    server = MllpListener(handler, "127.0.0.1", 0)
    senders = 8
    with serving(server), contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            for _ in range(senders)
        ]

        def message(n: int, i: int) -> str:
            return m.EPIC_A04.replace("EPC0001", f"G{n}-{i}").replace("E1001", f"G{n}x{i}")

        socks[0].sendall(frame(message(0, 0)))
        assert handler.entered.wait(10)
        for n, sock in enumerate(socks[1:], 1):
            sock.sendall(frame(message(n, 0)))
        _until(lambda: server.stats.received == senders, "queueing a message per connection")
        handler.gate.set()

        def sender(n: int) -> list[str]:
            """Read each ACK, check its message is committed (another connection sees it),
            then send the next."""
            sock, acks = socks[n], []
            for i in range(10):
                ack = read_ack(sock)
                acks.append(ack_code(ack))
                assert f"G{n}-{i}" in control_ids(db), "an ACK came before its commit"
                if i < 9:
                    sock.sendall(frame(message(n, i + 1)))
            return acks

        with ThreadPoolExecutor(senders) as pool:
            results = list(pool.map(sender, range(senders)))
    assert all(codes == ["AA"] * 10 for codes in results)
    assert control_ids(db) == {f"G{n}-{i}" for n in range(senders) for i in range(10)}
    # The 7 messages queued behind the gate are stored together, in one group commit (sender
    # 0's next message may join them: it is sent as soon as its first ACK arrives).
    second = b"".join(handler.groups[1])
    assert all(f"|G{n}-0|".encode() in second for n in range(1, senders))
    assert sum(map(len, handler.groups)) == senders * 10


def test_idle_connections_never_hold_a_group() -> None:
    """A group waits for the other open connections' next messages only briefly: one sender
    beside idle connections is answered, message after message, in groups of one."""
    handler = InMemoryHandler()
    server = MllpListener(handler, "127.0.0.1", 0)
    with serving(server), contextlib.ExitStack() as stack:
        for _ in range(3):  # open, and silent
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        _until(lambda: server.stats.connections == 3, "three idle connections")
        assert send(server.port, ["A", "B", "C"]) == ["MSA|AA|A", "MSA|AA|B", "MSA|AA|C"]
    assert handler.groups == [[b"A"], [b"B"], [b"C"]]


def test_a_failed_store_is_refused_not_acknowledged_and_the_writer_recovers(db: Engine) -> None:
    """The writer's database connection dies between two groups (PostgreSQL terminates it):
    the next group is answered AR (send again) and not stored; the writer opens a new
    connection, and the message sent again is stored once and acknowledged AA."""
    if db.dialect.name != "postgresql":
        pytest.skip("a connection to terminate: PostgreSQL (SQLite has none)")
    handler = StoreThenAck(db)
    server = MllpListener(handler, "127.0.0.1", 0)
    first = m.EPIC_A04
    second = m.EPIC_A04.replace("EPC0001", "EPC0002").replace("E1001", "E1002")
    with serving(server):
        assert [ack_code(a) for a in send(server.port, [first])] == ["AA"]
        assert handler._conn is not None
        pid = handler._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with db.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        refused = send(server.port, [second])
        assert ack_code(refused[0]) == "AR"
        assert control_ids(db) == {"EPC0001"}
        assert [ack_code(a) for a in send(server.port, [second])] == ["AA"]
    assert control_ids(db) == {"EPC0001", "EPC0002"} and stored(db) == 2
    assert server.stats.acked == {"AA": 2, "AE": 0, "AR": 1}


def _patient(tag: str) -> str:
    return m.EPIC_A04.replace("EPC0001", tag).replace("E1001", f"P{tag}")


def _queue_behind_the_gate(
    handler: GatedStoreThenAck, server: MllpListener, socks: list[socket.socket], texts: list[str]
) -> None:
    """Send texts[0] on socks[0] and hold its group at the gate; then send the others, one per
    connection, so that they queue and are handed over as one group once the gate opens."""
    socks[0].sendall(frame(texts[0]))
    assert handler.entered.wait(10)
    for sock, message in zip(socks[1:], texts[1:], strict=True):
        sock.sendall(frame(message))
    _until(lambda: server.stats.received == len(texts), "queueing a message per connection")


def test_a_redelivery_inside_one_group_is_acknowledged_and_stored_once(db: Engine) -> None:
    """The same message from two connections in one group, and again in a later group: every
    copy is answered AA, one row is stored, and only the first copy is new work for ingest."""
    handler = GatedStoreThenAck(db)
    server = MllpListener(handler, "127.0.0.1", 0)
    same = _patient("DUP1")
    with serving(server), contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            for _ in range(4)
        ]
        _queue_behind_the_gate(handler, server, socks, [_patient("OTHER"), same, same, same])
        handler.gate.set()
        assert [ack_code(read_ack(sock)) for sock in socks] == ["AA"] * 4
        assert [ack_code(a) for a in send(server.port, [same])] == ["AA"]
    assert sorted(handler.groups[1]) == [same.encode()] * 3
    assert [[reply.new for reply in group] for group in handler.replies] == [
        [True],
        [True, False, False],
        [False],
    ]
    assert control_ids(db) == {"OTHER", "DUP1"} and stored(db) == 2


def test_a_group_whose_store_dies_midway_gets_no_aa(db: Engine) -> None:
    """A group of three stops inside its INSERT (another transaction holds the id its second
    row takes) and its database connection is terminated there: all three are answered AR and
    none is stored; sent again, each is stored once and acknowledged AA."""
    if db.dialect.name != "postgresql":
        pytest.skip("a statement to terminate mid-group: PostgreSQL (SQLite has none)")
    handler = GatedStoreThenAck(db)
    server = MllpListener(handler, "127.0.0.1", 0)
    texts = [_patient(tag) for tag in ("FIRST", "MID1", "MID2", "MID3")]
    with serving(server), contextlib.ExitStack() as stack, db.connect() as blocker:
        socks = [
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            for _ in range(4)
        ]
        _queue_behind_the_gate(handler, server, socks, texts)
        # FIRST takes taken + 1, MID1 taken + 2, MID2 would take taken + 3: held here.
        taken = blocker.execute(
            text("SELECT nextval(pg_get_serial_sequence('hl7_messages', 'id'))")
        ).scalar_one()
        blocker.execute(
            insert(Hl7Message).values(id=taken + 3, content_hash="-", raw=b"-", source="mllp")
        )
        handler.gate.set()
        assert ack_code(read_ack(socks[0])) == "AA"
        with db.connect() as watcher:
            waiting = text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            _until(lambda: watcher.execute(waiting).first() is not None, "the group to wait")
            watcher.execute(
                text("SELECT pg_terminate_backend(:pid)"),
                {"pid": watcher.execute(waiting).scalar()},
            )
        assert [ack_code(read_ack(sock)) for sock in socks[1:]] == ["AR"] * 3
        blocker.rollback()
        assert control_ids(db) == {"FIRST"}
        for sock, message in zip(socks[1:], texts[1:], strict=True):
            sock.sendall(frame(message))
        assert [ack_code(read_ack(sock)) for sock in socks[1:]] == ["AA"] * 3
    assert control_ids(db) == {"FIRST", "MID1", "MID2", "MID3"} and stored(db) == 4
    assert server.stats.acked == {"AA": 4, "AE": 0, "AR": 3}
