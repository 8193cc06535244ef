"""One sending thread's writes on a database connection of its own for the whole dispatch run:
the hot step "previous message sent + next one started" in one round trip (PostgreSQL: a
pipeline of two statements and a COMMIT), every other outcome through the outbox repository."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine

from openslots.connectors.database.models import OutboxStatus
from openslots.connectors.database.outbox import mark_started, record_sent
from openslots.domain.messages import KEY_SEPARATOR
from openslots.domain.statuses import InvitationStatus

if TYPE_CHECKING:
    import psycopg

_SENDING = OutboxStatus.SENDING.value
# One statement: the previous message sent and the next one started, each only while this
# worker holds it (record_sent and mark_started for one id each), and the sent message's
# invitation row locked. Locked before it is read: a message of the same attempt on another
# channel, sent by another worker at the same moment, is then seen by the next statement (a
# new snapshot under READ COMMITTED), and the attempt is counted once.
_PG_SENT_AND_STARTED = f"""
WITH sent AS (
    UPDATE outbox SET status = '{OutboxStatus.SENT.value}', sent_at = %(now)s,
        lease_expires_at = NULL, last_error = NULL
    WHERE id = %(sent)s AND status = '{_SENDING}' AND worker_id = %(worker)s
    RETURNING invitation_id
), started AS (
    UPDATE outbox SET send_started_at = %(now)s, attempts = attempts + 1
    WHERE id = %(start)s AND status = '{_SENDING}' AND worker_id = %(worker)s
    RETURNING id
), locked AS (
    SELECT id FROM invitations WHERE id IN (SELECT invitation_id FROM sent) FOR UPDATE
)
SELECT (SELECT count(*) FROM sent), (SELECT count(*) FROM started), (SELECT count(*) FROM locked)
"""
_PG_JUST_SENT = f"""
SELECT invitation_id FROM outbox
WHERE id = %(sent)s AND status = '{OutboxStatus.SENT.value}' AND worker_id = %(worker)s
"""
# attempt_of(key) in SQL: the key without its last part (the channel).
_ATTEMPT_SQL = f"regexp_replace(idempotency_key, '{KEY_SEPARATOR}[^{KEY_SEPARATOR}]*$', '')"
# An attempt is counted by its first message to go: no other message of the invitation with
# the same key but for its channel (attempt_of) is sent. Those are read through the invitation's
# own messages (OFFSET 0 keeps the status test outside, so it cannot steer the planner to
# ix_outbox_status_id: that walked every sent row of the outbox).
_PG_INVITATION_SENT = f"""
UPDATE invitations SET
    status = CASE WHEN status = '{InvitationStatus.QUEUED.value}'
        THEN '{InvitationStatus.SENT.value}' ELSE status END,
    first_sent_at = COALESCE(first_sent_at, %(now)s),
    last_sent_at = %(now)s,
    send_count = send_count + CASE WHEN EXISTS (
        SELECT 1 FROM (
            SELECT status, idempotency_key FROM outbox
            WHERE invitation_id = invitations.id AND id <> %(sent)s OFFSET 0
        ) AS other
        WHERE other.status = '{OutboxStatus.SENT.value}'
          AND {_ATTEMPT_SQL.replace("idempotency_key", "other.idempotency_key")}
            = (SELECT {_ATTEMPT_SQL} FROM outbox WHERE id = %(sent)s)
    ) THEN 0 ELSE 1 END,
    updated_at = %(now)s
WHERE id = ({_PG_JUST_SENT})
"""


class SenderLedger:
    """One sending thread's writes, on a database connection of its own for the whole run.

    A pooled connection checked out (and pinged) for every message, and record_sent's and
    mark_started's statements built and compiled anew each time, cost more of a message's CPU
    than sending it. `sent_and_started` is the hot path: the outcome of the previous message
    (sent) and the start of the next one, in one transaction; on PostgreSQL its two statements
    travel as one pipeline (one round trip, one commit). Every other outcome goes through
    `transaction()` and the usual repository functions.
    """

    def __init__(self, engine: Engine, worker_id: str):
        self._worker_id = worker_id
        self._conn = engine.connect()
        self._pg: psycopg.Connection[Any] | None = None
        if self._conn.dialect.driver == "psycopg":
            pg = cast("psycopg.Connection[Any]", self._conn.connection.driver_connection)
            self._pg = pg
            # Two cursors for the whole run: a cursor a statement cost more than its SQL.
            self._step = pg.cursor()
            self._invitation = pg.cursor()
            self._commit = pg.cursor()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._conn.begin():
            yield self._conn

    def sent_and_started(
        self,
        sent_id: int | None,
        start_id: int | None,
        now: dt.datetime,
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[bool, bool]:
        """Record `sent_id` sent (record_sent) and mark `start_id` started (mark_started), each
        only while this worker still holds it, and commit; returns whether each was.

        `meanwhile` (which must not raise) runs on PostgreSQL while the server works: after the
        statements and their COMMIT left, before their answer is read; elsewhere after the
        commit. Whatever it does must not need the commit (a relay's MAIL, RCPT and DATA do
        not: nothing of the message leaves before its data).
        """
        if self._pg is None:
            with self.transaction() as conn:
                sent = (
                    sent_id is not None
                    and record_sent(conn, [sent_id], worker_id=self._worker_id) == 1
                )
                started = start_id is not None and mark_started(
                    conn, start_id, self._worker_id, now
                )
            if meanwhile is not None:
                meanwhile()
            return sent, started
        params = {"now": now, "sent": sent_id, "start": start_id, "worker": self._worker_id}
        pg = self._pg
        try:
            with pg.pipeline():
                self._step.execute(_PG_SENT_AND_STARTED, params)
                if sent_id is not None:
                    self._invitation.execute(_PG_INVITATION_SENT, params)
                if meanwhile is None:
                    pg.commit()
                else:
                    self._commit.execute("COMMIT")  # sent now; answered at the pipeline's sync
                    meanwhile()
        except BaseException:
            pg.rollback()
            raise
        row = self._step.fetchone()
        assert row is not None
        return row[0] == 1, row[1] == 1

    def close(self) -> None:
        self._conn.close()
