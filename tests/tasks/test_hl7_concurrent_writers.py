"""Two writers store the same HL7 message at the same moment (the MLLP listener's handler and a
file drop's receipt, each its own connection, released together by a barrier): the message is
stored once, and every sender is answered AA, one of them as a redelivery."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, func, select

from openslots.connectors.database.models import Hl7Message
from openslots.tasks.hl7_receive import StoreThenAck, receive
from tests import hl7_messages as m

ROUNDS = 15


def message(n: int) -> bytes:
    return m.EPIC_A04.replace("EPC0001", f"EPC7{n:03d}").replace("E1001", f"E7{n:03d}").encode()


def test_the_listener_and_a_file_drop_storing_one_message_at_once_store_it_once(
    db: Engine,
) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: no two stores overlap")
    listener = StoreThenAck(db)
    barrier = threading.Barrier(2)

    def by_listener(raw: bytes) -> tuple[str, bool]:
        barrier.wait()
        (reply,) = listener.handle([raw])
        return reply.code, reply.new

    def by_file_drop(raw: bytes) -> tuple[str, bool]:
        with db.connect() as conn:
            barrier.wait()
            (stored,) = receive(conn, [raw], "file")
            conn.commit()
        return stored.ack_code, not stored.duplicate

    try:
        with ThreadPoolExecutor(2) as pool:
            for n in range(ROUNDS):
                raw = message(n)
                listened = pool.submit(by_listener, raw)
                dropped = pool.submit(by_file_drop, raw)
                answers = [listened.result(timeout=30), dropped.result(timeout=30)]
                assert [code for code, _ in answers] == ["AA", "AA"]
                assert sorted(new for _, new in answers) == [False, True], f"round {n}"
    finally:
        listener.close()
    with db.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(Hl7Message)).scalar_one()
    assert stored == ROUNDS
