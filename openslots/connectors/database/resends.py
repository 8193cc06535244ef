"""The automatic resend cadence's storage: which Sent invitations may owe a step, and the
decided steps (`invitation_resends`), written once per invitation and step.

The rule (domain.cadence.plan_resend) decides; this module loads what it needs, in id-ordered
chunks of a coarse set-based preselection, and writes what it answered. The unique key
(invitation, step) makes two runs at once (one day, or two machines) queue nothing twice: a
step's row is inserted with ON CONFLICT DO NOTHING and only the run whose row went in records
the invitation's next attempt, which dispatch turns into `resend:{id}:{step}:{channel}`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    Connection,
    Table,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from openslots.connectors.database._dialect import upsert
from openslots.connectors.database.models import (
    AuditEvent,
    Invitation,
    InvitationResend,
    Location,
    OutboxMessage,
    OutboxStatus,
    Provider,
    ResendStepState,
)
from openslots.domain import clock
from openslots.domain.statuses import InvitationStatus

RESENDS = cast(Table, InvitationResend.__table__)
# Invitations read and decided per transaction.
CHUNK = 5_000
# Messages that may still go out: a new step now would reach the client with them.
WAITING = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED, OutboxStatus.UNKNOWN)
AUDIT_ACTOR = "resend-cadence"


@dataclass(frozen=True, slots=True)
class ProviderCadence:
    """A provider and its own cadence text (None: the setting's)."""

    provider_id: int
    name: str
    cadence: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A Sent invitation that may owe a step (ids and dates only)."""

    invitation_id: int
    first_sent_at: dt.datetime
    last_sent_at: dt.datetime | None
    timezone: str | None
    recorded: tuple[int, ...]
    waiting: bool


def provider_cadences(conn: Connection, provider_id: int | None = None) -> list[ProviderCadence]:
    """Every provider (or the one given) with its own cadence, by name."""
    query = select(Provider.id, Provider.name, Provider.resend_cadence).order_by(Provider.name)
    if provider_id is not None:
        query = query.where(Provider.id == provider_id)
    return [ProviderCadence(row.id, row.name, row.resend_cadence) for row in conn.execute(query)]


def set_cadence(conn: Connection, provider_id: int, cadence: str | None) -> str | None:
    """Give a provider its own cadence text (None: back to the setting); returns the old one."""
    old = conn.execute(
        select(Provider.resend_cadence).where(Provider.id == provider_id)
    ).scalar_one()
    conn.execute(
        update(Provider)
        .where(Provider.id == provider_id)
        .values(resend_cadence=cadence, updated_at=clock.now())
    )
    return cast(str | None, old)


def _sent_before(as_of: dt.date, days: int) -> dt.datetime:
    """An instant after every first send whose local day is `days` or more before `as_of`, in
    any time zone (UTC-14..+14): the coarse bound of the preselection; the rule decides."""
    day = as_of - dt.timedelta(days=days) + dt.timedelta(days=2)
    return dt.datetime.combine(day, dt.time(0), dt.UTC)


def candidates(
    conn: Connection,
    provider_id: int,
    cadence: Sequence[int],
    as_of: dt.date,
    after_id: int,
    limit: int = CHUNK,
) -> list[Candidate]:
    """Sent invitations of the provider, ids after `after_id`, that may owe a step on `as_of`:
    first sent long enough ago for the first step, and with no step recorded at or beyond the
    latest one that can be due. A superset of what the rule queues (the bound is a day loose)."""
    reached = (
        select(func.coalesce(func.max(InvitationResend.step_days), 0))
        .where(InvitationResend.invitation_id == Invitation.id)
        .scalar_subquery()
    )
    latest_due = case(
        *[
            (Invitation.first_sent_at < _sent_before(as_of, step), step)
            for step in sorted(cadence, reverse=True)
        ],
        else_=0,
    )
    waiting = or_(
        Invitation.messages_attempt < Invitation.attempt,
        exists(
            select(OutboxMessage.id).where(
                OutboxMessage.invitation_id == Invitation.id,
                OutboxMessage.status.in_(list(WAITING)),
            )
        ),
    )
    rows = conn.execute(
        select(
            Invitation.id,
            Invitation.first_sent_at,
            Invitation.last_sent_at,
            Location.timezone,
            waiting.label("waiting"),
        )
        .join(Location, Location.id == Invitation.location_id)
        .where(
            Invitation.provider_id == provider_id,
            Invitation.status == InvitationStatus.SENT,
            Invitation.first_sent_at < _sent_before(as_of, min(cadence)),
            Invitation.id > after_id,
            reached < latest_due,
        )
        .order_by(Invitation.id)
        .limit(limit)
    ).all()
    steps: dict[int, list[int]] = {row.id: [] for row in rows}
    if steps:
        for invitation_id, step in conn.execute(
            select(InvitationResend.invitation_id, InvitationResend.step_days).where(
                InvitationResend.invitation_id.in_(list(steps))
            )
        ):
            steps[invitation_id].append(step)
    return [
        Candidate(
            row.id,
            row.first_sent_at,
            row.last_sent_at,
            row.timezone,
            tuple(sorted(steps[row.id])),
            bool(row.waiting),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class StepRow:
    """One decided step to record."""

    invitation_id: int
    step_days: int
    state: ResendStepState
    reason: str | None


def record_steps(conn: Connection, rows: Sequence[StepRow], as_of: dt.date) -> list[StepRow]:
    """Insert the decided steps, each unless already there (another run decided it); returns
    the rows this call inserted. In (invitation, step) order, so two runs writing the same
    keys wait for each other instead of deadlocking."""
    if not rows:
        return []
    now = clock.now()
    statement = (
        upsert(conn, RESENDS)
        .on_conflict_do_nothing(index_elements=["invitation_id", "step_days"])
        .returning(RESENDS.c.invitation_id, RESENDS.c.step_days)
    )
    ordered = sorted(rows, key=lambda r: (r.invitation_id, r.step_days))
    inserted = {
        (row.invitation_id, row.step_days)
        for row in conn.execute(
            statement,
            [
                {
                    "invitation_id": r.invitation_id,
                    "step_days": r.step_days,
                    "state": r.state,
                    "reason": r.reason,
                    "as_of": as_of,
                    "created_at": now,
                }
                for r in ordered
            ],
        )
    }
    return [r for r in ordered if (r.invitation_id, r.step_days) in inserted]


def queue_attempts(conn: Connection, steps: Sequence[StepRow]) -> int:
    """Record the next attempt of each invitation whose step was queued, guarded by "nothing
    owed" (a manual resend that came first is the one message; the step then names it), and
    audit it. Returns the invitations whose attempt was recorded."""
    if not steps:
        return 0
    step_of = {s.invitation_id: s.step_days for s in steps}
    now = clock.now()
    queued = conn.execute(
        update(Invitation)
        .where(
            Invitation.id.in_(sorted(step_of)),
            Invitation.messages_attempt == Invitation.attempt,
        )
        .values(attempt=Invitation.attempt + 1, updated_at=now)
        .returning(Invitation.id, Invitation.attempt)
    ).all()
    if queued:
        conn.execute(
            insert(AuditEvent),
            [
                {
                    "entity": "invitation",
                    "entity_id": row.id,
                    "action": "resend",
                    "from_value": None,
                    "to_value": str(row.attempt),
                    "actor": AUDIT_ACTOR,
                    "reason": f"cadence step {step_of[row.id]} days",
                    "created_at": now,
                }
                for row in queued
            ],
        )
    return len(queued)
