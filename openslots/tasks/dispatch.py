"""Dispatch: turn owed intents into outbox messages, then send them in parallel, each once.

One `dispatch_outbox` run is one worker with an id (host:pid:random). It claims batches under
leases that name it, renews them from a heartbeat thread while it works, and feeds the batches
to `dispatch_connections` threads that each own an email and an SMS sender (one SMTP
connection per thread, reused across batches) and a database connection (SenderLedger);
the next batch is claimed while the last messages of the previous one are still going out. A
thread commits "this message is being handed to a sender" before each send, together with the
outcome of its previous message (on PostgreSQL one round trip), so a worker killed at any
moment leaves at most one message per thread whose outcome is unknown; every other message it
held returns to pending when its lease expires."""

from __future__ import annotations

import datetime as dt
import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection

from openslots.connectors.database import offer_responses, opt_outs
from openslots.connectors.database import offers as offer_repo
from openslots.connectors.database import outbox as repo
from openslots.connectors.database.models import Channel, OutboxKind, OutboxStatus
from openslots.connectors.database.sender_ledger import SenderLedger
from openslots.connectors.email import (
    EmailSender,
    FileEmailSender,
    OutgoingEmail,
    SmtpEmailSender,
    safe_file_name,
)
from openslots.connectors.sms import FileSmsSender, OutgoingSms, SmsSender
from openslots.connectors.templates import MessageTemplates
from openslots.domain import clock
from openslots.domain import dispatch as rules
from openslots.domain.messages import InvitationContext, is_automatic_resend
from openslots.domain.offers import CLAIM_PURPOSE, format_start
from openslots.domain.rendering import MessageKind, invitation_variables, link
from openslots.domain.tokens import make_token
from openslots.errors import RecipientOptedOut, SendOutcomeUnknown, SendRefused, SendRejected
from openslots.resources import Resources, resources
from openslots.tasks._safety import phi_safe, run_logger
from openslots.tasks.offers import offer_due

LEASE_EXPIRED = "lease expired during send"
OPTED_OUT_AT_PROVIDER = "the SMS provider reports that the recipient unsubscribed"


@dataclass
class DispatchCounts:
    """What one run did, in counts (no patient data): safe as a Prefect result."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0  # refused, to be retried after its backoff
    unknown: int = 0  # may have gone out (including sends whose worker's lease expired)
    cancelled: int = 0
    dead: int = 0
    materialised: int = 0
    returned_to_pending: int = 0
    expired_leases: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def worker_id() -> str:
    """host:pid:random, unique per run even when a process runs several."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@task(name="materialise-intents", cache_policy=NO_CACHE)
@phi_safe("materialise-intents")
def materialise_intents() -> int:
    """Write the outbox messages every owed invitation attempt needs, in id-range chunks
    (set-based INSERT ... SELECT ... ON CONFLICT DO NOTHING); returns the messages written."""
    res = resources()
    engine = res.require_current_schema()
    # Open Slots offers that came due (a Serial group whose timeout passed, a morning after
    # the quiet hours), and slots whose cutoff passed, first: they are the most urgent.
    written = offer_due(engine, res.settings, clock.now()).messages
    with engine.begin() as conn:  # what claims owe (alerts still in flight when one won)
        written += offer_responses.queue_claim_messages(
            conn, clock.now(), notify_taken=res.settings.alert_notify_taken
        )
    with engine.connect() as conn:
        span = repo.owed_id_range(conn)
    if span is None:
        return written
    first, last = span
    for low in range(first, last + 1, repo.MATERIALISE_CHUNK):
        high = min(low + repo.MATERIALISE_CHUNK - 1, last)
        with engine.begin() as conn:
            written += repo.materialise_intents(conn, low, high, clock.now())
    return written


@task(name="dispatch-outbox", cache_policy=NO_CACHE)
@phi_safe("dispatch-outbox")
def dispatch_outbox(limit: int | None = None) -> DispatchCounts:
    """Send due messages in leased batches until none is left (or `limit` were claimed).

    Recovers expired leases first: a message never handed to a sender returns to pending; one
    whose send had started is `unknown`, except with a file backend, whose outcome is read from
    the file the key names.
    """
    return _Worker(resources()).run(limit)


_Item = repo.PendingInvitation | offer_repo.PendingOffer


@dataclass
class _Outcome:
    """A send's outcome, written in the thread's next transaction."""

    item: _Item
    status: OutboxStatus
    reason: str | None = None
    next_attempt_at: dt.datetime | None = None
    opt_out_phone: str | None = None


class _Worker:
    def __init__(self, res: Resources):
        self.settings = res.settings
        self.engine = res.require_current_schema()
        # Loaded (and checked) first: a broken override fails the run before anything is claimed.
        self.templates = MessageTemplates.load(self.settings)
        self.secret_key = res.secret_key()
        self.id = worker_id()
        self.senders = [res.new_senders() for _ in range(self.settings.dispatch_connections)]
        self.buckets = {
            Channel.EMAIL: _bucket(self.settings.email_per_second),
            Channel.SMS: _bucket(self.settings.sms_per_second),
        }
        self.counts = DispatchCounts()
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []

    # -- the run --------------------------------------------------------------------------

    def run(self, limit: int | None) -> DispatchCounts:
        logger = run_logger()
        self._recover()
        work: queue.Queue[_Item | None] = queue.Queue()
        threads = [
            threading.Thread(target=self._send_loop, args=(work, pair), daemon=True)
            for pair in self.senders
        ]
        heartbeat = _Heartbeat(self)
        heartbeat.start()
        for thread in threads:
            thread.start()
        try:
            while not self.errors and (limit is None or self.counts.claimed < limit):
                size = self.settings.dispatch_batch_size
                if limit is not None:
                    size = min(size, limit - self.counts.claimed)
                with self.engine.begin() as conn:
                    ids = repo.claim(
                        conn,
                        size,
                        self.settings.lease_seconds,
                        worker_id=self.id,
                        max_attempts=self.settings.dispatch_max_attempts,
                        channels=self._channels(),
                        now=clock.now(),
                    )
                if not ids:
                    break
                self.counts.claimed += len(ids)
                with self.engine.connect() as conn:
                    items: list[_Item] = [*repo.load_invitations(conn, ids)]
                    items += offer_repo.load_offers(conn, ids)
                    for item in sorted(items, key=lambda i: i.outbox_id):
                        work.put(item)
                # The next batch is claimed while this one's last messages are still going out,
                # so the threads do not stand idle through a claim and a load at every batch.
                while work.unfinished_tasks > 2 * len(threads) and not self.errors:
                    time.sleep(0.005)
                logger.info(
                    "dispatched %d messages so far (%d sent)", self.counts.claimed, self.counts.sent
                )
        finally:
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
            heartbeat.stop()
        if self.errors:
            raise self.errors[0]
        return self.counts

    def _channels(self) -> tuple[Channel, ...]:
        """Texts are not claimed inside the quiet hours (they wait for the morning)."""
        quiet = rules.in_quiet_hours(
            clock.now(), self.settings.resolved_quiet_hours(), self.settings.default_timezone
        )
        return (Channel.EMAIL,) if quiet else (Channel.EMAIL, Channel.SMS)

    # -- expired leases -------------------------------------------------------------------

    def _recover(self) -> None:
        now = clock.now()
        with self.engine.begin() as conn:
            unstarted = repo.return_unstarted(conn, now)
            expired = repo.expired_sends(conn, now)
            known: dict[bool | None, list[int]] = {True: [], False: [], None: []}
            for send in expired:
                known[self._file_outcome(send)].append(send.outbox_id)
            repo.record_sent(conn, known[True])
            returned = repo.resolve_expired(conn, known[False], OutboxStatus.PENDING, None, now)
            unknown = repo.resolve_expired(
                conn, known[None], OutboxStatus.UNKNOWN, LEASE_EXPIRED, now
            )
        self.counts.expired_leases = unstarted + len(expired)
        self.counts.returned_to_pending = unstarted + returned
        self.counts.unknown += unknown

    def _file_outcome(self, send: repo.ExpiredSend) -> bool | None:
        """Whether a file backend wrote the message (the file its key names is there), or None
        when the backend cannot tell (SMTP, Twilio)."""
        email, sms = self.senders[0]
        path: Path | None = None
        if send.channel == Channel.EMAIL and isinstance(email, FileEmailSender):
            path = email.directory / f"{safe_file_name(send.key)}.eml"
        elif send.channel == Channel.SMS and isinstance(sms, FileSmsSender):
            path = sms.directory / f"{safe_file_name(send.key)}.json"
        return None if path is None else path.exists()

    # -- one sending thread ---------------------------------------------------------------

    def _send_loop(
        self,
        work: queue.Queue[_Item | None],
        senders: tuple[EmailSender, SmsSender],
    ) -> None:
        done: list[_Outcome] = []
        ledger: SenderLedger | None = None
        try:
            ledger = SenderLedger(self.engine, self.id)
            while (item := work.get()) is not None:
                try:
                    if not self.errors:
                        self._send_one(item, senders, done, ledger)
                except BaseException as exc:  # re-raised by run(), stripped by phi_safe
                    with self.lock:
                        self.errors.append(exc)
                finally:
                    work.task_done()
            work.task_done()
            if done:
                self._record(ledger, done, None)
        except BaseException as exc:
            with self.lock:
                self.errors.append(exc)
        finally:
            if ledger is not None:
                ledger.close()
            close = getattr(senders[0], "close", None)
            if callable(close):
                close()

    def _send_one(
        self,
        item: _Item,
        senders: tuple[EmailSender, SmsSender],
        done: list[_Outcome],
        ledger: SenderLedger,
    ) -> None:
        address = item.email if item.channel == Channel.EMAIL else item.mobile_phone
        if isinstance(item, offer_repo.PendingOffer):
            reason = "recipient opted out" if item.opted_out else None
            if not item.slot_open and item.kind == OutboxKind.SLOT_ALERT:
                reason = offer_repo.WITHDRAWN  # claimed or closed since: never sent
        else:
            reason = rules.cancel_reason(
                item.status, opted_out=item.opted_out, automatic=is_automatic_resend(item.key)
            )
        if reason is None and not address:
            reason = f"no {item.channel} address any more"
        if reason is not None:
            done.append(_Outcome(item, OutboxStatus.CANCELLED, reason))
            return
        message = self._render(item)
        bucket = self.buckets[item.channel]
        if bucket is not None:
            time.sleep(bucket.reserve(time.monotonic()))
        email = senders[0]
        if isinstance(message, OutgoingEmail) and isinstance(email, SmtpEmailSender):
            # The relay is told sender and recipient (MAIL, RCPT, DATA) while the database
            # commits the start: nothing of the message leaves before its data, which waits.
            envelope = _Envelope(email, message)
            if not self._record(ledger, done, item, envelope.begin):
                envelope.abandon()
                return  # the lease is no longer ours: another worker has it
            done.append(self._outcome(item, envelope.complete))
            return
        # The outcome of the previous message and the start of this one, in one commit.
        if not self._record(ledger, done, item):
            return  # the lease is no longer ours: another worker has it
        done.append(self._send(item, message, senders))

    def _record(
        self,
        ledger: SenderLedger,
        done: list[_Outcome],
        start: _Item | None,
        meanwhile: Callable[[], None] | None = None,
    ) -> bool:
        """Write the outcomes in `done` and mark `start` started, in one transaction (on
        PostgreSQL one round trip when the only outcome is a send, with `meanwhile` run while
        the server works); False when `start` is no longer this worker's to send."""
        now = clock.now()
        start_id = None if start is None else start.outbox_id
        if len(done) <= 1 and all(o.status is OutboxStatus.SENT for o in done):
            sent, started = ledger.sent_and_started(
                done[0].item.outbox_id if done else None, start_id, now, meanwhile
            )
            if sent:
                self._count(done[0])
        else:
            with ledger.transaction() as conn:
                self._write(conn, done)
                started = start_id is not None and repo.mark_started(conn, start_id, self.id, now)
            if started and meanwhile is not None:
                meanwhile()
        done.clear()
        return started

    def _send(
        self,
        item: _Item,
        message: OutgoingEmail | OutgoingSms,
        senders: tuple[EmailSender, SmsSender],
    ) -> _Outcome:
        email, sms = senders
        if isinstance(message, OutgoingEmail):
            return self._outcome(item, lambda: email.send(message))
        return self._outcome(item, lambda: sms.send(message))

    def _outcome(self, item: _Item, send: Callable[[], None]) -> _Outcome:
        """What became of `send()`: sent, or the outcome its error means."""
        try:
            send()
        except RecipientOptedOut as exc:
            return _Outcome(item, OutboxStatus.DEAD, exc.reason, opt_out_phone=item.mobile_phone)
        except SendRejected as exc:
            return _Outcome(item, OutboxStatus.DEAD, exc.reason)
        except SendRefused as exc:
            attempts = item.attempts + 1
            if rules.retries_exhausted(attempts, self.settings.dispatch_max_attempts):
                return _Outcome(item, OutboxStatus.DEAD, f"retries exhausted ({exc.reason})")
            delay = rules.retry_delay(
                attempts,
                base_seconds=self.settings.dispatch_retry_base_seconds,
                jitter=random.uniform(*rules.JITTER_RANGE),
                retry_after=exc.retry_after,
            )
            return _Outcome(item, OutboxStatus.FAILED, exc.reason, clock.now() + delay)
        except SendOutcomeUnknown as exc:
            return _Outcome(item, OutboxStatus.UNKNOWN, exc.reason)
        return _Outcome(item, OutboxStatus.SENT)

    def _write(self, conn: Connection, outcomes: list[_Outcome]) -> None:
        """Record outcomes, each only while this worker still holds the message."""
        for outcome in outcomes:
            item = outcome.item
            if outcome.status is OutboxStatus.SENT:
                applied = repo.record_sent(conn, [item.outbox_id], worker_id=self.id) == 1
            else:
                if outcome.opt_out_phone:
                    opt_outs.opt_out(
                        conn,
                        item.provider_id,
                        Channel.SMS,
                        outcome.opt_out_phone,
                        actor="sms-provider",
                        reason=OPTED_OUT_AT_PROVIDER,
                    )
                applied = repo.record_outcome(
                    conn,
                    item.outbox_id,
                    outcome.status,
                    outcome.reason or "",
                    worker_id=self.id,
                    next_attempt_at=outcome.next_attempt_at,
                )
            if applied:
                self._count(outcome)

    def _count(self, outcome: _Outcome) -> None:
        with self.lock:
            name = str(outcome.status)
            setattr(self.counts, name, getattr(self.counts, name) + 1)
            if outcome.status is OutboxStatus.SENT:
                channel = str(outcome.item.channel)
                self.counts.by_channel[channel] = self.counts.by_channel.get(channel, 0) + 1

    # -- the message ----------------------------------------------------------------------

    def _render(self, item: _Item) -> OutgoingEmail | OutgoingSms:
        if isinstance(item, offer_repo.PendingOffer):
            return self._render_offer(item)
        ctx = InvitationContext(
            item.first_name,
            item.last_name,
            item.provider,
            item.location,
            item.guardian_first_name,
            item.guardian_last_name,
        )
        kind = rules.message_kind(ctx, resend=item.kind == OutboxKind.RESEND)
        # The token names the message, not the person: `openslots unsubscribe` reads it back.
        expires = clock.now() + dt.timedelta(days=self.settings.unsubscribe_token_days)
        token = make_token(self.secret_key, "unsubscribe", item.outbox_id, expires)
        unsubscribe_url = link(self.settings.public_url, "unsubscribe", token)
        _, variables = invitation_variables(
            ctx,
            public_url=self.settings.public_url,
            unsubscribe_url=unsubscribe_url,
            email_on_file=bool(item.email),
        )
        if item.channel == Channel.SMS:
            text = self.templates.sms(kind, variables)
            return OutgoingSms(item.key, item.mobile_phone or "", text)
        rendered = self.templates.email(kind, variables)
        recipient = (
            (item.guardian_first_name, item.guardian_last_name)
            if ctx.is_dependent
            else (item.first_name, item.last_name)
        )
        return OutgoingEmail(
            key=item.key,
            to=item.email or "",
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe_url,
            to_name=" ".join(part for part in recipient if part) or None,
        )

    def _render_offer(self, item: offer_repo.PendingOffer) -> OutgoingEmail | OutgoingSms:
        """A slot alert: the claim link names the offer and expires when the slot starts."""
        now = clock.now()
        starts_at = item.starts_at or now
        claim_token = make_token(self.secret_key, CLAIM_PURPOSE, item.offer_id, starts_at)
        expires = now + dt.timedelta(days=self.settings.unsubscribe_token_days)
        token = make_token(self.secret_key, "unsubscribe", item.outbox_id, expires)
        unsubscribe_url = link(self.settings.public_url, "unsubscribe", token)
        variables = {
            "first_name": item.first_name,
            "last_name": item.last_name,
            "provider": item.provider,
            "location": item.location,
            "public_url": self.settings.public_url,
            "unsubscribe_url": unsubscribe_url,
            "slot_start": format_start(starts_at, item.timezone or self.settings.default_timezone),
            "slot_minutes": str(item.duration_minutes or ""),
            "visit_type": item.visit_type or "",
            "claim_url": link(self.settings.public_url, "claim", claim_token),
        }
        kind = _OFFER_MESSAGES[OutboxKind(item.kind)]
        if item.channel == Channel.SMS:
            text = self.templates.sms(kind, variables)
            return OutgoingSms(item.key, item.mobile_phone or "", text)
        rendered = self.templates.email(kind, variables)
        return OutgoingEmail(
            key=item.key,
            to=item.email or "",
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe_url,
            to_name=f"{item.first_name} {item.last_name}",
        )


class _Envelope:
    """One email's SMTP transaction in two steps around the commit of its start: `begin`
    (MAIL, RCPT, DATA; never raises, an error waits for `complete`), then `complete` (the data)
    or `abandon` (the connection closed before any data: the relay discards the message)."""

    def __init__(self, sender: SmtpEmailSender, message: OutgoingEmail):
        self._sender = sender
        self._message = message
        self._data: bytes | None = None
        self._error: Exception | None = None

    def begin(self) -> None:
        try:
            self._data = self._sender.begin(self._message)
        except Exception as exc:  # SendRefused / SendRejected, raised again by complete()
            self._error = exc

    def complete(self) -> None:
        if self._error is not None:
            raise self._error
        if self._data is None:  # begin() never ran: the start was not recorded
            raise RuntimeError("an SMTP transaction completed without its beginning")
        self._sender.complete(self._data)

    def abandon(self) -> None:
        if self._data is not None:
            self._sender.abandon()


# An offer's messages: the alert with its claim link, and the two a claim owes.
_OFFER_MESSAGES = {
    OutboxKind.SLOT_ALERT: MessageKind.SLOT_ALERT,
    OutboxKind.SLOT_CONFIRMED: MessageKind.SLOT_CONFIRMED,
    OutboxKind.SLOT_UNAVAILABLE: MessageKind.SLOT_UNAVAILABLE,
}


def _bucket(rate: float | None) -> rules.TokenBucket | None:
    return None if rate is None else rules.TokenBucket(rate=rate, capacity=max(1.0, rate))


class _Heartbeat:
    """Renews the worker's leases every lease/3 seconds while it works, so that no other worker
    recovers a message it still holds."""

    def __init__(self, worker: _Worker):
        self._worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        lease = self._worker.settings.lease_seconds
        while not self._stop.wait(lease / 3):
            try:
                with self._worker.engine.begin() as conn:
                    repo.renew_leases(
                        conn, self._worker.id, clock.now() + dt.timedelta(seconds=lease)
                    )
            except Exception as exc:  # the next beat tries again; the class name only
                run_logger().warning("lease renewal failed (%s)", type(exc).__name__)
