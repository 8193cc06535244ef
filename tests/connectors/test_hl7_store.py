"""The HL7 message store on both databases: a file's worth of messages (COPY on PostgreSQL from
COPY_FROM new messages) keeps the messages' order in its ids and recognises redeliveries; a
claim marks exactly the rows it returns, oldest first, under a lease (answering raw bytes, or
content hashes with the bytes fetched on demand)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import Engine, select

from openslots.connectors.database import hl7_store as store
from openslots.connectors.database.models import Hl7Message, Hl7MessageStatus
from openslots.domain import clock
from openslots.tasks.hl7_receive import receive
from tests import hl7_messages as m

COUNT = store.COPY_FROM * 2 + 5


def patient(n: int) -> bytes:
    return m.EPIC_A04.replace("EPC0001", f"EPC7{n:04d}").replace("E1001", f"E7{n:04d}").encode()


def sha(raw: bytes) -> str:
    """The content hash the store keeps of a message (and a claim answers)."""
    return hashlib.sha256(raw).hexdigest()


def test_a_large_batch_is_stored_in_order_once(db: Engine) -> None:
    raws = [patient(n) for n in range(COUNT)]
    reused = m.EPIC_A04.replace("EPC0001", "EPC70000").replace("E1001", "E79999").encode()
    batch = [*raws, raws[3], reused]  # a redelivery and a reused control id inside the batch
    with db.begin() as conn:
        stored = receive(conn, batch, "file")
    ids = [s.message_id for s in stored[:COUNT]]
    assert ids == sorted(ids) and len(set(ids)) == COUNT
    assert stored[COUNT].duplicate and stored[COUNT].message_id == ids[3]
    assert stored[COUNT + 1].control_id_reused and not stored[COUNT + 1].duplicate
    with db.connect() as conn:
        rows = conn.execute(
            select(
                Hl7Message.id, Hl7Message.raw, Hl7Message.content_hash, Hl7Message.status
            ).order_by(Hl7Message.id)
        ).all()
    assert [bytes(r.raw) for r in rows] == [*raws, reused]
    assert all(r.content_hash == hashlib.sha256(r.raw).hexdigest() for r in rows)
    assert {r.status for r in rows} == {Hl7MessageStatus.STORED}
    with db.begin() as conn:  # the whole file again: every message is a redelivery
        again = receive(conn, raws, "file")
    assert all(s.duplicate for s in again) and [s.message_id for s in again] == ids
    with db.connect() as conn:
        assert len(conn.execute(select(Hl7Message.id)).all()) == COUNT + 1


def test_a_claim_marks_the_rows_it_returns_oldest_first(db: Engine) -> None:
    with db.begin() as conn:
        receive(conn, [patient(n) for n in range(COUNT)], "file")
    now, lease = clock.now(), dt.timedelta(seconds=60)
    with db.begin() as conn:
        first = store.claim_stored_digests(conn, 10, now, lease)
        second = store.claim_stored_digests(conn, COUNT, now, lease)
    assert [digest for _, digest in first] == [sha(patient(n)) for n in range(10)]
    assert [i for i, _ in first + second] == sorted(i for i, _ in first + second)
    assert len(second) == COUNT - 10
    with db.connect() as conn:
        rows = conn.execute(select(Hl7Message.status, Hl7Message.lease_expires_at)).all()
    assert {status for status, _ in rows} == {Hl7MessageStatus.APPLYING}
    with db.begin() as conn:  # nothing is left while the leases hold; all of it once expired
        assert store.claim_stored_digests(conn, COUNT, now, lease) == []
        later = store.claim_stored_digests(conn, COUNT, now + 2 * lease, lease)
    assert [i for i, _ in later] == [i for i, _ in first + second]


def test_a_claim_of_digests_marks_the_same_rows_and_answers_their_content_hashes(
    db: Engine,
) -> None:
    # What ingest claims: the hash the store kept of each message's bytes, the bytes on demand.
    raws = [patient(n) for n in range(COUNT)]
    with db.begin() as conn:
        receive(conn, raws, "file")
    now, lease = clock.now(), dt.timedelta(seconds=60)
    with db.begin() as conn:
        first = store.claim_stored_digests(conn, 10, now, lease)
        second = store.claim_stored_digests(conn, COUNT, now, lease)
        assert store.claim_stored_digests(conn, COUNT, now, lease) == []  # the leases hold
    claimed = first + second
    assert [i for i, _ in claimed] == sorted(i for i, _ in claimed) and len(claimed) == COUNT
    assert [digest for _, digest in claimed] == [sha(r) for r in raws]
    with db.connect() as conn:
        statuses = conn.execute(select(Hl7Message.status)).scalars().all()
        ids = [i for i, _ in claimed]
        assert store.stored_raws(conn, ids[::-1]) == dict(zip(ids, raws, strict=True))
        assert store.stored_raws(conn, []) == {}
    assert set(statuses) == {Hl7MessageStatus.APPLYING}


def test_two_claims_at_once_take_different_rows_without_waiting(db: Engine) -> None:
    # PostgreSQL: the second claim skips the rows the first holds (SKIP LOCKED) instead of
    # waiting for them or claiming them too. SQLite serialises writers: one claim at a time.
    if db.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: one claim at a time")
    with db.begin() as conn:
        receive(conn, [patient(n) for n in range(COUNT)], "file")
    now, lease = clock.now(), dt.timedelta(seconds=60)
    with db.connect() as one, db.connect() as two, one.begin():
        first = store.claim_stored_digests(one, 10, now, lease)
        with two.begin():
            two.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            second = store.claim_stored_digests(two, COUNT, now, lease)
    assert [digest for _, digest in first] == [sha(patient(n)) for n in range(10)]
    assert [digest for _, digest in second] == [sha(patient(n)) for n in range(10, COUNT)]
