"""Dispatch scenario (issue 9): the dispatch worker against the plain yagmail loop over SMTP.

* The relay: tests.smtp_server.SmtpSink (aiosmtpd, the one the tests use) in a child process
  (in this one it would share the GIL with the sixteen sending threads and measure itself as
  much as the dispatcher), answering each message 20 ms late (a relay's latency).
* measured: `dispatch_outbox.fn()` (openslots.tasks.dispatch: no Prefect server) with
  OPENSLOTS_DISPATCH_CONNECTIONS=16, on N email invitations of seeded synthetic people
  (`synthetic.people(n, seed, phone_share=0)`) imported with the roster task functions and
  materialised into outbox messages (untimed); every message is rendered, leased, marked
  started, sent and recorded, as in production.
* baseline, same run, same messages (rendered beforehand by the same templates, so the loop is
  not charged for rendering): `yag.send(...)` per message on one `yagmail.SMTP` object, which
  connects again for every message (yagmail 0.16 `send()` calls `login()`). At ~40 msg/s it
  sends the first `dispatch_baseline` messages and its time is scaled to N.
* After the rounds, one more dispatch with a relay that answers at once (`no_latency_msg_per_s`).

Targets (issue 9): with latency >= 10x the baseline (ratio <= 0.1) and >= 400 msg/s; without
latency >= 700 msg/s; every message delivered exactly once.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from typing import Any

from benchmarks._suite import LOCATION, PROVIDER, ROOT, Context, Scenario, Timer, log

FROM = "alerts@clinic.example"
LATENCY_S = 0.02
CONNECTIONS = 16
TARGET_LATENCY_RATIO = 10.0
TARGET_LATENCY_RATE = 400.0
TARGET_RATE = 700.0

SINK_PROCESS = """
import json, sys
from tests.smtp_server import SmtpSink
with SmtpSink(keep_content=False) as sink:
    print(json.dumps({"port": sink.port}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            sink.handler.delay = float(argument)
        elif command == "clear":
            sink.clear()
        recipients = sink.recipients()
        print(json.dumps({"received": sink.count(), "distinct": len(set(recipients)),
                          "connections": sink.connections}), flush=True)
"""


class RemoteSink:
    """tests.smtp_server.SmtpSink in a child process, driven over its stdin/stdout."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", SINK_PROCESS],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(json.loads(self._process.stdout.readline())["port"])

    def ask(self, command: str) -> dict[str, int]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        answer: dict[str, int] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


def import_people(ctx: Context, count: int) -> None:
    """Seeded synthetic email-only roster through the roster task functions."""
    from openslots import synthetic
    from openslots.tasks.roster import apply_roster, stage_roster, start_import

    path = ctx.home / f"dispatch-roster-{count}.csv"
    if not path.exists():
        rows = (p.row() for p in synthetic.people(count, seed=ctx.seed, phone_share=0.0))
        synthetic.write_roster(path, rows)
    begun = start_import.fn(str(path), PROVIDER, LOCATION, "invite", False, False)
    staged = stage_roster.fn(begun.batch_id, str(path))
    summary = apply_roster.fn(begun.batch_id, staged)
    queued = summary.as_dict().get("queued_invitations")
    if queued != count:
        log(f"WARNING: {queued} invitations queued of {count} rows")


def render_all() -> list[Any]:
    """Every outbox message rendered as the worker renders it (the baseline's input)."""
    from sqlalchemy import select

    from openslots.connectors.database import outbox as repo
    from openslots.connectors.database.models import OutboxMessage
    from openslots.resources import resources
    from openslots.tasks.dispatch import _Worker

    worker = _Worker(resources())
    with worker.engine.connect() as conn:
        ids = list(conn.execute(select(OutboxMessage.id).order_by(OutboxMessage.id)).scalars())
        items = repo.load_invitations(conn, ids)
    return [worker._render(item) for item in items]


def yagmail_loop(messages: list[Any], host: str, port: int) -> float:
    """The plain loop: one yagmail.SMTP, `send()` per message; returns seconds."""
    import yagmail

    yag = yagmail.SMTP(
        user={FROM: FROM},
        host=host,
        port=port,
        smtp_starttls=False,
        smtp_ssl=False,  # the sink speaks plain SMTP (yagmail's default is implicit TLS)
        smtp_skip_login=True,
        soft_email_validation=False,
    )
    with Timer() as timer:
        for message in messages:
            yag.send(
                to=message.to,
                subject=message.subject,
                contents=[yagmail.raw(message.body)],
                headers={
                    "List-Unsubscribe": f"<{message.unsubscribe_url}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                prettify_html=False,
            )
    with contextlib.suppress(Exception):
        yag.close()
    return timer.seconds


class DispatchSmtp(Scenario):
    name = "dispatch_smtp"
    baseline_name = "yagmail send() loop (sample, scaled)"
    target = (
        f"ratio <= 0.1 (>= {TARGET_LATENCY_RATIO:g}x faster), >= {TARGET_LATENCY_RATE:g} msg/s; "
        f">= {TARGET_RATE:g} msg/s at 0 ms"
    )

    def size_label(self) -> str:
        return f"{self.ctx.size.dispatch_messages:,} emails"

    def setup(self) -> None:
        env = {
            "OPENSLOTS_EMAIL_BACKEND": "smtp",
            "OPENSLOTS_SMTP_HOST": "127.0.0.1",
            "OPENSLOTS_SMTP_STARTTLS": "false",
            "OPENSLOTS_EMAIL_FROM": FROM,
            "OPENSLOTS_SECRET_KEY": "bench-secret-key-not-for-production",
            "OPENSLOTS_DISPATCH_CONNECTIONS": str(CONNECTIONS),
            "OPENSLOTS_SMS_QUIET_HOURS": "off",
        }
        self.sink = RemoteSink()
        self.set_env(env | {"OPENSLOTS_SMTP_PORT": str(self.sink.port)})
        self.duplicates = 0
        self.sent: list[int] = []
        self.rendered: list[Any] = []

    def _prepare(self) -> None:
        """Fresh schema, N invitations, their outbox messages; the baseline's sample rendered."""
        import logging

        from openslots.tasks.dispatch import materialise_intents

        logging.getLogger("openslots").setLevel(logging.WARNING)  # a line per batch at INFO
        postgres = self.ctx.use_postgres()
        postgres.fresh_schema()
        count = self.ctx.size.dispatch_messages
        import_people(self.ctx, count)
        materialised = materialise_intents.fn()
        if materialised != count:
            log(f"WARNING: {materialised} messages materialised for {count} invitations")
        self.rendered = render_all()[: self.ctx.size.dispatch_baseline]

    def baseline(self, index: int) -> float:
        if not self.rendered:
            self._prepare()
        self.sink.ask(f"delay {LATENCY_S}")
        self.sink.ask("clear")
        seconds = yagmail_loop(self.rendered, self.sink.host, self.sink.port)
        received = self.sink.ask("stats")["received"]
        if received != len(self.rendered):
            log(f"WARNING: the baseline delivered {received} of {len(self.rendered)}")
        self.extra["baseline_messages"] = len(self.rendered)
        return seconds * self.ctx.size.dispatch_messages / len(self.rendered)

    def _dispatch(self, latency: float) -> float:
        from openslots.tasks.dispatch import dispatch_outbox

        if not self.rendered:
            self._prepare()
        self.sink.ask(f"delay {latency}")
        self.sink.ask("clear")
        with Timer() as timer:
            counts = dispatch_outbox.fn()
        relay = self.sink.ask("stats")
        self.duplicates += relay["received"] - relay["distinct"]
        self.sent.append(counts.sent)
        self.rendered = []  # the next round starts from a fresh outbox
        return timer.seconds

    def measured(self, index: int) -> float:
        return self._dispatch(LATENCY_S)

    def finish(self) -> None:
        try:
            seconds = self._dispatch(0.0)
            self.extra["no_latency_msg_per_s"] = round(self.sent[-1] / seconds)
        finally:
            self.sink.close()
            self.restore_env()

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        count = self.ctx.size.dispatch_messages
        rate = count / median_s
        self.extra |= {
            "messages": count,
            "msg_per_s": round(rate),
            "baseline_msg_per_s": round(count / baseline_s),
            "connections": CONNECTIONS,
            "latency_ms": round(LATENCY_S * 1000),
            "duplicates": self.duplicates,
            "all_sent": all(n == count for n in self.sent),
        }
        return (
            baseline_s / median_s >= TARGET_LATENCY_RATIO
            and rate >= TARGET_LATENCY_RATE
            and self.extra.get("no_latency_msg_per_s", 0) >= TARGET_RATE
            and self.duplicates == 0
            and bool(self.extra["all_sent"])
        )


SCENARIOS: list[type[Scenario]] = [DispatchSmtp]
