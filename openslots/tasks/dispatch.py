"""Dispatch: drain the outbox through the configured email and SMS senders."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from openslots.connectors.database import outbox as repo
from openslots.connectors.database.models import Channel, OutboxStatus
from openslots.connectors.email import EmailSender, OutgoingEmail
from openslots.connectors.sms import OutgoingSms, SmsSender
from openslots.domain.messages import InvitationContext, invitation_email, invitation_sms
from openslots.errors import SendOutcomeUnknown, SendRefused
from openslots.resources import resources
from openslots.tasks._safety import phi_safe, run_logger


@dataclass
class DispatchCounts:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    expired_leases: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@task(name="dispatch-outbox", cache_policy=NO_CACHE)
@phi_safe("dispatch-outbox")
def dispatch_outbox(limit: int | None = None) -> DispatchCounts:
    """Send pending messages in leased batches until the outbox is empty (or `limit` is hit).

    Each batch: claim (commit), send each message, record every outcome (commit). A crash
    between send and record leaves the lease to expire: those messages become `unknown`.
    """
    res = resources()
    settings, engine = res.settings, res.require_current_schema()
    senders = (res.email, res.sms)
    counts = DispatchCounts()
    logger = run_logger()
    with engine.begin() as conn:
        counts.expired_leases = repo.expire_leases(conn)
    while limit is None or counts.claimed < limit:
        size = settings.dispatch_batch_size
        if limit is not None:
            size = min(size, limit - counts.claimed)
        with engine.begin() as conn:
            ids = repo.claim(conn, size, settings.lease_seconds)
        if not ids:
            break
        counts.claimed += len(ids)
        with engine.connect() as conn:
            pending = repo.load_invitations(conn, ids)
        sent = _send_all(engine, pending, senders, counts)
        with engine.begin() as conn:
            repo.record_sent(conn, sent)
        logger.info("dispatched %d messages so far (%d sent)", counts.claimed, counts.sent)
    return counts


def _send_all(
    engine: Engine,
    pending: list[repo.PendingInvitation],
    senders: tuple[EmailSender, SmsSender],
    counts: DispatchCounts,
) -> list[int]:
    email, sms = senders
    sent: list[int] = []
    outcomes: list[tuple[int, OutboxStatus, str]] = []
    for item in pending:
        if item.opted_out:
            outcomes.append((item.outbox_id, OutboxStatus.CANCELLED, "recipient opted out"))
            counts.cancelled += 1
            continue
        ctx = InvitationContext(
            item.first_name,
            item.last_name,
            item.provider,
            item.location,
            item.guardian_first_name,
            item.guardian_last_name,
        )
        try:
            if item.channel == Channel.EMAIL:
                subject, body = invitation_email(ctx)
                email.send(OutgoingEmail(item.key, item.email, subject, body))
            else:
                if not item.mobile_phone:
                    outcomes.append((item.outbox_id, OutboxStatus.CANCELLED, "no mobile phone"))
                    counts.cancelled += 1
                    continue
                sms.send(OutgoingSms(item.key, item.mobile_phone, invitation_sms(ctx)))
        except SendRefused as exc:
            outcomes.append((item.outbox_id, OutboxStatus.FAILED, exc.reason))
            counts.failed += 1
            continue
        except SendOutcomeUnknown as exc:
            outcomes.append((item.outbox_id, OutboxStatus.UNKNOWN, exc.reason))
            counts.unknown += 1
            continue
        sent.append(item.outbox_id)
        counts.sent += 1
        channel = str(item.channel)
        counts.by_channel[channel] = counts.by_channel.get(channel, 0) + 1
    if outcomes:
        with engine.begin() as conn:
            for outbox_id, status, reason in outcomes:
                repo.record_outcome(conn, outbox_id, status, reason)
    return sent
