"""The message outbox: materialise owed intents, claim under a lease that names the worker,
read what to send, record each outcome.

Every write a worker makes to a claimed message is guarded by `worker_id = me AND status =
sending`: once a lease expired and another worker recovered the message, the first one's late
answer changes nothing. Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL so several
dispatch workers share one outbox without sending a message twice; SQLite serialises writers.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast

from openslots.connectors.database._dialect import skip_locked, upsert
from openslots.connectors.database.eligibility import not_opted_out
from openslots.connectors.database.eligibility import opted_out as contact_opted_out
from openslots.connectors.database.models import (
    Channel,
    Client,
    Invitation,
    InvitationResend,
    Location,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Provider,
    ResendStepState,
)
from openslots.domain import clock
from openslots.domain.dispatch import SEND_FORBIDDEN
from openslots.domain.messages import (
    KEY_SEPARATOR,
    attempt_of,
    invitation_key_parts,
    resend_key_parts,
)
from openslots.domain.statuses import InvitationStatus

OUTBOX = cast(Table, OutboxMessage.__table__)
# Invitations per materialising statement: bounded transactions on a million-row table.
MATERIALISE_CHUNK = 50_000


def key_sql(parts: Sequence[object]) -> ColumnElement[str]:
    """The SQL twin of `KEY_SEPARATOR.join(map(str, parts))` (see domain.messages): columns
    among `parts` are cast to text, the strings and numbers between them bound as one string."""
    pieces: list[ColumnElement[str]] = []
    run = ""
    for index, part in enumerate(parts):
        run += KEY_SEPARATOR if index else ""
        if isinstance(part, str | int):
            run += str(part)
        else:
            if run:
                pieces.append(literal(run, String))
            pieces.append(sql_cast(part, String(20)))
            run = ""
    if run:
        pieces.append(literal(run, String))
    key = pieces[0]
    for piece in pieces[1:]:
        key = key + piece
    return key


# --- intents -> messages -------------------------------------------------------------------


def _owed() -> ColumnElement[bool]:
    """An invitation owes messages: its attempt is not materialised, its status still permits
    sending, and its contact has not opted out (the one definition)."""
    return and_(
        Invitation.messages_attempt < Invitation.attempt,
        Invitation.status.not_in(list(SEND_FORBIDDEN)),
    )


def _message_key(channel: Channel) -> ColumnElement[str]:
    """An owed attempt's key on `channel`: `resend:{id}:{step}:{channel}` when the resend
    cadence queued it, else `invite:{id}:{attempt}:{channel}` (a first send, a manual resend).

    The cadence records a step's attempt only while nothing is owed, so the owed attempt is the
    invitation's latest queued step exactly while that step has no message on this channel
    yet; once it has, a later attempt is a manual resend.
    """
    latest_step = (
        select(func.max(InvitationResend.step_days))
        .where(
            InvitationResend.invitation_id == Invitation.id,
            InvitationResend.state == ResendStepState.QUEUED,
        )
        # Explicitly: inside the EXISTS below it would otherwise take `invitations` as its own.
        .correlate(Invitation)
        .scalar_subquery()
    )
    step_key = key_sql(resend_key_parts(Invitation.id, latest_step, channel))
    step_sent = exists(
        select(OutboxMessage.id).where(
            OutboxMessage.invitation_id == Invitation.id, OutboxMessage.idempotency_key == step_key
        )
    )
    # `attempt > 1` first: a first send (a million-row roster's) never looks at the steps.
    return case(
        (and_(Invitation.attempt > 1, latest_step.is_not(None), ~step_sent), step_key),
        else_=key_sql(invitation_key_parts(Invitation.id, Invitation.attempt, channel)),
    )


def owed_id_range(conn: Connection) -> tuple[int, int] | None:
    """(lowest, highest) id of the invitations that owe messages, or None: one scan, so a run
    with nothing owed costs one statement."""
    low, high = conn.execute(
        select(func.min(Invitation.id), func.max(Invitation.id)).where(_owed())
    ).one()
    return None if low is None else (int(low), int(high))


def materialise_intents(conn: Connection, first_id: int, last_id: int, now: dt.datetime) -> int:
    """Write the messages the invitations with ids in [first_id, last_id] owe, set-based: an
    email when the client has an address, a text when a mobile phone, keyed by the intent
    (`invite:{id}:{attempt}:{channel}`, or `resend:{id}:{step}:{channel}` for an attempt the
    resend cadence queued), so a second dispatcher doing the same inserts nothing (ON CONFLICT
    DO NOTHING). Then records the attempt as materialised. Returns the messages written.

    A resend never moves `attempt` while it is owed (domain.lifecycle.resend_attempt), so the
    attempt the INSERT read is the one the UPDATE records.
    """

    def bound(name: str, value: object) -> ColumnElement[object]:
        return literal(value, OUTBOX.c[name].type)

    in_chunk = and_(Invitation.id >= first_id, Invitation.id <= last_id, _owed())
    reachable = not_opted_out(Invitation.provider_id, Client.email, Client.mobile_phone)
    kind = case(
        (Invitation.attempt > 1, literal(OutboxKind.RESEND.value, String)),
        else_=literal(OutboxKind.INVITATION.value, String),
    )
    columns = ["idempotency_key", "kind", "channel", "invitation_id", "status", "attempts"]
    written = 0
    for channel, address in ((Channel.EMAIL, Client.email), (Channel.SMS, Client.mobile_phone)):
        source = (
            select(
                _message_key(channel),
                kind,
                bound("channel", channel),
                Invitation.id,
                bound("status", OutboxStatus.PENDING),
                bound("attempts", 0),
                bound("created_at", now),
            )
            .select_from(Invitation)
            .join(Client, Client.id == Invitation.client_id)
            .where(in_chunk, address.is_not(None), reachable)
            # One insertion order for every dispatcher: two writing the same keys wait for
            # each other instead of deadlocking on the unique index.
            .order_by(Invitation.id)
        )
        statement = (
            upsert(conn, OUTBOX)
            .from_select([*columns, "created_at"], source, include_defaults=False)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        result = conn.execute(statement, execution_options={"preserve_rowcount": True})
        written += max(int(result.rowcount or 0), 0)
    client_reachable = exists(
        select(Client.id).where(
            Client.id == Invitation.client_id,
            not_opted_out(Invitation.provider_id, Client.email, Client.mobile_phone),
        )
    )
    conn.execute(
        update(Invitation)
        .where(in_chunk, client_reachable)
        .values(messages_attempt=Invitation.attempt)
    )
    return written


# --- leases --------------------------------------------------------------------------------


def return_unstarted(conn: Connection, now: dt.datetime) -> int:
    """Expired leases on messages never handed to a sender go back to pending: nothing of them
    left, so sending them later is not a resend."""
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.lease_expires_at < now,
            OutboxMessage.send_started_at.is_(None),
        )
        .values(status=OutboxStatus.PENDING, worker_id=None, lease_expires_at=None)
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class ExpiredSend:
    """A message whose worker's lease expired after its send had started."""

    outbox_id: int
    key: str
    channel: Channel


def expired_sends(conn: Connection, now: dt.datetime) -> list[ExpiredSend]:
    """Messages whose lease expired during a send (a live worker renews its leases, so only a
    dead or stalled worker's show up), locked until this transaction resolves them."""
    query = (
        select(OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.channel)
        .where(
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.lease_expires_at < now,
            OutboxMessage.send_started_at.is_not(None),
        )
        .order_by(OutboxMessage.id)
    )
    return [
        ExpiredSend(row.id, row.idempotency_key, Channel(row.channel))
        for row in conn.execute(skip_locked(conn, query))
    ]


def resolve_expired(
    conn: Connection, ids: Sequence[int], status: OutboxStatus, reason: str | None, now: dt.datetime
) -> int:
    """Give messages from `expired_sends` the status their send is known (or not) to have had."""
    if not ids:
        return 0
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.status == OutboxStatus.SENDING,
            OutboxMessage.lease_expires_at < now,
        )
        .values(status=status, last_error=reason, lease_expires_at=None)
    )
    return int(result.rowcount or 0)


def claim(
    conn: Connection,
    limit: int,
    lease_seconds: int,
    *,
    worker_id: str = "unnamed",
    max_attempts: int = 1,
    channels: Sequence[Channel] = (Channel.EMAIL, Channel.SMS),
    now: dt.datetime | None = None,
) -> list[int]:
    """Take up to `limit` due messages of `channels`, oldest first, under a lease held by
    `worker_id`: pending ones, and failed ones whose retry time came with attempts left."""
    now = now or clock.now()
    due = or_(
        OutboxMessage.status == OutboxStatus.PENDING,
        and_(
            OutboxMessage.status == OutboxStatus.FAILED,
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.attempts < max_attempts,
        ),
    )
    pick = (
        select(OutboxMessage.id)
        .where(due, OutboxMessage.channel.in_(list(channels)))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    ids = list(conn.execute(skip_locked(conn, pick)).scalars())
    if ids:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(
                status=OutboxStatus.SENDING,
                worker_id=worker_id,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                send_started_at=None,
            )
        )
    return ids


def renew_leases(conn: Connection, worker_id: str, until: dt.datetime) -> int:
    """Extend every lease `worker_id` still holds (the heartbeat of a live worker)."""
    result = conn.execute(
        update(OutboxMessage)
        .where(OutboxMessage.worker_id == worker_id, OutboxMessage.status == OutboxStatus.SENDING)
        .values(lease_expires_at=until)
    )
    return int(result.rowcount or 0)


def mark_started(conn: Connection, outbox_id: int, worker_id: str, now: dt.datetime) -> bool:
    """Record that the message is about to be handed to a sender (one more attempt); False
    when the lease is no longer this worker's, and then it must not be sent."""
    result = conn.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == outbox_id,
            OutboxMessage.worker_id == worker_id,
            OutboxMessage.status == OutboxStatus.SENDING,
        )
        .values(send_started_at=now, attempts=OutboxMessage.attempts + 1)
    )
    return bool(result.rowcount)


# --- what to send --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingInvitation:
    """What a sender needs for one claimed invitation message (patient data: stays in-task)."""

    outbox_id: int
    key: str
    kind: str
    channel: Channel
    attempts: int
    email: str | None
    mobile_phone: str | None
    first_name: str
    last_name: str
    guardian_first_name: str | None
    guardian_last_name: str | None
    provider_id: int
    provider: str
    location: str
    status: InvitationStatus
    opted_out: bool


def load_invitations(conn: Connection, ids: Sequence[int]) -> list[PendingInvitation]:
    opted_out = contact_opted_out(Invitation.provider_id, Client.email, Client.mobile_phone)
    rows = conn.execute(
        select(
            OutboxMessage.id.label("outbox_id"),
            OutboxMessage.idempotency_key.label("key"),
            OutboxMessage.kind,
            OutboxMessage.channel,
            OutboxMessage.attempts,
            Client.email,
            Client.mobile_phone,
            Client.first_name,
            Client.last_name,
            Client.guardian_first_name,
            Client.guardian_last_name,
            Invitation.provider_id,
            Provider.name.label("provider"),
            Location.name.label("location"),
            Invitation.status,
            opted_out.label("opted_out"),
        )
        .join(Invitation, Invitation.id == OutboxMessage.invitation_id)
        .join(Client, Client.id == Invitation.client_id)
        .join(Provider, Provider.id == Invitation.provider_id)
        .join(Location, Location.id == Invitation.location_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    ).all()
    return [
        PendingInvitation(
            **(
                row._asdict()
                | {
                    "channel": Channel(row.channel),
                    "status": InvitationStatus(row.status),
                    "opted_out": bool(row.opted_out),
                }
            )
        )
        for row in rows
    ]


# --- outcomes ------------------------------------------------------------------------------


def record_sent(conn: Connection, ids: Sequence[int], *, worker_id: str | None = None) -> int:
    """Mark messages sent; their invitations show Sent (seed: the date is the last time an
    invitation was sent). Returns the messages marked.

    With `worker_id`, only messages that worker still holds (a sender's answer); without, an
    operator's word: messages sending or unknown.
    """
    if not ids:
        return 0
    now = clock.now()
    held: ColumnElement[bool]
    if worker_id is None:
        held = OutboxMessage.status.in_([OutboxStatus.SENDING, OutboxStatus.UNKNOWN])
    else:
        held = and_(
            OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.worker_id == worker_id
        )
    marked = conn.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), held)
        .values(status=OutboxStatus.SENT, sent_at=now, lease_expires_at=None, last_error=None)
        .returning(OutboxMessage.id, OutboxMessage.invitation_id, OutboxMessage.idempotency_key)
    ).all()
    # An invitation is Sent once any of its messages went, whatever the channel (a feed patient
    # may have a phone only); `send_count` counts its attempts, each once, by the first of its
    # messages to go (the others of that attempt were sent before, or in this same call).
    attempts: set[tuple[int, str]] = {
        (int(row.invitation_id), attempt_of(row.idempotency_key))
        for row in marked
        if row.invitation_id is not None
    }
    invitations = sorted({inv for inv, _ in attempts})
    earlier: set[tuple[int, str]] = set()
    for start in range(0, len(invitations), 1000):
        # Two workers sending an attempt's email and text at once: the second waits here for
        # the first to commit, then sees its message sent (READ COMMITTED reads anew per
        # statement); locked in id order, so two workers never deadlock. SQLite: one writer.
        conn.execute(
            select(Invitation.id)
            .where(Invitation.id.in_(invitations[start : start + 1000]))
            .order_by(Invitation.id)
            .with_for_update()
        )
    for start in range(0, len(invitations), 1000):
        rows = conn.execute(
            select(OutboxMessage.invitation_id, OutboxMessage.idempotency_key).where(
                OutboxMessage.invitation_id.in_(invitations[start : start + 1000]),
                OutboxMessage.status == OutboxStatus.SENT,
                OutboxMessage.id.not_in([row.id for row in marked]),
            )
        )
        earlier |= {(int(inv), attempt_of(key)) for inv, key in rows if inv is not None}
    new_sends = Counter(inv for inv, _ in attempts - earlier)
    by_increment: dict[int, list[int]] = defaultdict(list)
    for inv in invitations:
        by_increment[new_sends[inv]].append(inv)
    for increment, group in by_increment.items():
        conn.execute(
            update(Invitation)
            .where(Invitation.id.in_(group))
            .values(
                status=case(
                    (Invitation.status == InvitationStatus.QUEUED, InvitationStatus.SENT.value),
                    else_=Invitation.status,
                ),
                first_sent_at=func.coalesce(Invitation.first_sent_at, now),
                last_sent_at=now,
                send_count=Invitation.send_count + increment,
                updated_at=now,
            )
        )
    return len(marked)


def record_outcome(
    conn: Connection,
    outbox_id: int,
    status: OutboxStatus,
    reason: str,
    *,
    worker_id: str | None = None,
    next_attempt_at: dt.datetime | None = None,
) -> bool:
    """Record a message's outcome other than sent (`reason` is PHI-free); with `worker_id`,
    only while that worker still holds it. False when the message was not this one's to mark."""
    held: ColumnElement[bool] = OutboxMessage.status == OutboxStatus.SENDING
    if worker_id is not None:
        held = and_(held, OutboxMessage.worker_id == worker_id)
    result = conn.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, held)
        .values(
            status=status,
            last_error=reason,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
        )
    )
    return bool(result.rowcount)
