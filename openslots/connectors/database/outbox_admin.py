"""The operator's side of the outbox: count, list, retry and resolve messages (audited), and
find whom a message reached (for an unsubscribe link or an inbound STOP).

Every change checks the state it expects in its WHERE clause, so an operator and a running
dispatcher never both move one message: the loser changes nothing and is told the state it
found. Listings carry ids, keys, states and reasons only: never a body, an address or a name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from openslots.connectors.database.eligibility import opted_out_on
from openslots.connectors.database.models import (
    AuditEvent,
    Channel,
    Client,
    Invitation,
    Offer,
    OptOut,
    OutboxMessage,
    OutboxStatus,
    Provider,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.outbox import record_sent
from openslots.domain import clock
from openslots.errors import OpenslotsError

AUDIT_ENTITY = "outbox"
# States an operator may send back to pending: failed (before its backoff ends) and dead (after
# reading why); `--all-failed` takes failed only, since dead was refused for good.
RETRYABLE = (OutboxStatus.FAILED, OutboxStatus.DEAD)
LISTABLE = (OutboxStatus.UNKNOWN, OutboxStatus.DEAD, OutboxStatus.FAILED)


class OutboxAdminError(OpenslotsError):
    """An operator command refused: unknown message id, or not in a state it applies to."""


# --- reading ------------------------------------------------------------------------------


def status_counts(conn: Connection) -> dict[str, int]:
    """Messages per `channel:status` (only pairs that have messages)."""
    rows = conn.execute(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.channel, OutboxMessage.status
        )
    ).all()
    return {f"{channel}:{status}": int(count) for channel, status, count in rows}


def list_messages(
    conn: Connection, states: Sequence[OutboxStatus], limit: int
) -> list[dict[str, Any]]:
    """Messages in `states`, oldest first: ids, key, kind, channel, state, attempts, reason and
    times. The key is built from ids (`invite:{invitation}:{attempt}:{channel}`), never PHI."""
    rows = conn.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.idempotency_key,
            OutboxMessage.kind,
            OutboxMessage.channel,
            OutboxMessage.status.label("state"),
            OutboxMessage.attempts,
            OutboxMessage.last_error.label("reason"),
            OutboxMessage.created_at,
            OutboxMessage.send_started_at,
            OutboxMessage.next_attempt_at,
            OutboxMessage.invitation_id,
        )
        .where(OutboxMessage.status.in_(list(states)))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return [
        {
            **row._mapping,
            "channel": str(row.channel),
            "state": str(row.state),
        }
        for row in rows
    ]


def _state_of(conn: Connection, outbox_id: int) -> OutboxStatus:
    found = conn.execute(
        select(OutboxMessage.status).where(OutboxMessage.id == outbox_id)
    ).scalar_one_or_none()
    if found is None:
        raise OutboxAdminError(f"no outbox message {outbox_id}")
    return OutboxStatus(found)


# --- changing -----------------------------------------------------------------------------


def _audit_many(
    conn: Connection,
    changes: Sequence[tuple[int, OutboxStatus]],
    action: str,
    to: OutboxStatus,
    actor: str,
    reason: str | None,
) -> None:
    # One executemany: `--all-failed` after a relay outage may move thousands of messages.
    if changes:
        now = clock.now()
        conn.execute(
            insert(AuditEvent),
            [
                {
                    "entity": AUDIT_ENTITY,
                    "entity_id": outbox_id,
                    "action": action,
                    "from_value": str(state),
                    "to_value": str(to),
                    "actor": actor,
                    "reason": reason,
                    "created_at": now,
                }
                for outbox_id, state in changes
            ],
        )


def _requeue(conn: Connection, where: Any, states: Sequence[OutboxStatus]) -> list[int]:
    """Back to pending now, from one of `states`: the backoff and any lease are cleared, the
    attempts kept (so the retry limit still counts them)."""
    rows = conn.execute(
        update(OutboxMessage)
        .where(where, OutboxMessage.status.in_(list(states)))
        .values(
            status=OutboxStatus.PENDING,
            next_attempt_at=None,
            lease_expires_at=None,
            worker_id=None,
            send_started_at=None,
        )
        .returning(OutboxMessage.id)
    ).all()
    return sorted(int(r.id) for r in rows)


def retry(conn: Connection, outbox_id: int, actor: str, reason: str | None = None) -> OutboxStatus:
    """A failed or dead message goes back to pending now; returns the state it left."""
    state = _state_of(conn, outbox_id)
    if state not in RETRYABLE:
        raise OutboxAdminError(
            f"outbox message {outbox_id} is {state}: only failed or dead messages are retried"
            + (" (use `openslots outbox resolve`)" if state is OutboxStatus.UNKNOWN else "")
        )
    if not _requeue(conn, OutboxMessage.id == outbox_id, [state]):
        raise OutboxAdminError(f"outbox message {outbox_id} changed state meanwhile; try again")
    _audit_many(conn, [(outbox_id, state)], "retry", OutboxStatus.PENDING, actor, reason)
    return state


def retry_all_failed(conn: Connection, actor: str, reason: str | None = None) -> list[int]:
    """Every failed message back to pending now; returns their ids (dead ones stay dead)."""
    moved = _requeue(conn, OutboxMessage.id.is_not(None), [OutboxStatus.FAILED])
    changes = [(i, OutboxStatus.FAILED) for i in moved]
    _audit_many(conn, changes, "retry", OutboxStatus.PENDING, actor, reason)
    return moved


def resolve(
    conn: Connection, outbox_id: int, *, sent: bool, actor: str, reason: str | None = None
) -> OutboxStatus:
    """An operator's verdict on an `unknown` message: it went out (sent, and its invitation
    Sent as after any send) or it did not (pending again). Returns the new state."""
    state = _state_of(conn, outbox_id)
    if state is not OutboxStatus.UNKNOWN:
        raise OutboxAdminError(
            f"outbox message {outbox_id} is {state}: only unknown messages are resolved"
        )
    if sent:
        # record_sent moves what a sender holds; hand it the message as if just sent, in this
        # transaction, so the invitation changes exactly as after a normal send.
        moved = conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id, OutboxMessage.status == OutboxStatus.UNKNOWN)
            .values(status=OutboxStatus.SENDING, lease_expires_at=None)
        ).rowcount
        if moved:
            record_sent(conn, [outbox_id])
            # Whatever bookkeeping record_sent keeps about leases, the verdict is final here.
            conn.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id, OutboxMessage.status != OutboxStatus.SENT)
                .values(
                    status=OutboxStatus.SENT,
                    sent_at=func.coalesce(OutboxMessage.sent_at, clock.now()),
                    lease_expires_at=None,
                )
            )
        new = OutboxStatus.SENT
    else:
        moved = len(_requeue(conn, OutboxMessage.id == outbox_id, [OutboxStatus.UNKNOWN]))
        new = OutboxStatus.PENDING
    if not moved:
        raise OutboxAdminError(f"outbox message {outbox_id} changed state meanwhile; try again")
    _audit_many(conn, [(outbox_id, state)], "resolve", new, actor, reason)
    return new


# --- whom a message reached ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """Whom one message was for: patient data, it stays inside the API call."""

    outbox_id: int
    provider_id: int
    provider: str
    channel: Channel
    address: str | None  # the client's current email or phone; None when they have none


def recipient(conn: Connection, outbox_id: int) -> Recipient | None:
    """The provider, channel and contact of an invitation or Open Slots message (an offer
    and what its claim owes), or None without one."""
    # An invitation's message names its client; an offer's (and what its claim owes) its
    # connection: the unsubscribe link of a slot alert names its message, too.
    provider_id = func.coalesce(Invitation.provider_id, ConnectionRow.provider_id)
    row = conn.execute(
        select(
            OutboxMessage.channel,
            provider_id.label("provider_id"),
            Provider.name,
            func.coalesce(Client.email, ConnectionRow.email).label("email"),
            func.coalesce(Client.mobile_phone, ConnectionRow.mobile_phone).label("mobile_phone"),
        )
        .outerjoin(Invitation, Invitation.id == OutboxMessage.invitation_id)
        .outerjoin(Client, Client.id == Invitation.client_id)
        .outerjoin(Offer, Offer.id == OutboxMessage.offer_id)
        .outerjoin(ConnectionRow, ConnectionRow.id == Offer.connection_id)
        .join(Provider, Provider.id == provider_id)
        .where(OutboxMessage.id == outbox_id)
    ).one_or_none()
    if row is None:
        return None
    channel = Channel(row.channel)
    return Recipient(
        outbox_id=outbox_id,
        provider_id=int(row.provider_id),
        provider=str(row.name),
        channel=channel,
        address=row.email if channel is Channel.EMAIL else row.mobile_phone,
    )


def is_opted_out(conn: Connection, provider_id: int, channel: Channel, address: str) -> bool:
    return bool(conn.execute(select(opted_out_on(provider_id, channel, address))).scalar())


def provider_ids(conn: Connection) -> list[int]:
    """Every provider: one installation number sends for all of them."""
    return [int(i) for i in conn.execute(select(Provider.id).order_by(Provider.id)).scalars()]


def providers_opted_out(conn: Connection, channel: Channel, address: str) -> list[int]:
    """Providers this address opted out of on this channel."""
    return [
        int(i)
        for i in conn.execute(
            select(OptOut.provider_id)
            .where(OptOut.channel == channel, OptOut.address == address)
            .order_by(OptOut.provider_id)
        ).scalars()
    ]
