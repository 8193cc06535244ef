"""Benchmark: the dispatch worker against the plain yagmail loop, over SMTP on loopback.

Run (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python benchmarks/dispatch.py                          # 10,000 messages, 100k intents
    .venv/bin/python benchmarks/dispatch.py --messages 1000 --materialise 0   # a quick run
    .venv/bin/python benchmarks/dispatch.py --materialise 100000,1000000 --json out.json

What it compares, on one aiosmtpd sink (tests/smtp_server.py) that first answers each message
`--latency` seconds late (20 ms: a relay's latency) and then at once:

* the sink runs in a child process (tests.smtp_server.SmtpSink, the one the tests use);
* measured: `dispatch_outbox` (openslots.tasks.dispatch, via `.fn`: no Prefect server) with
  OPENSLOTS_DISPATCH_CONNECTIONS=16 (`--connections`), on `--messages` email invitations of
  seeded synthetic people (`openslots.synthetic.people(n, seed, phone_share=0)`) imported with
  the roster tasks and materialised into outbox rows; every message is rendered, leased, marked
  started, sent and recorded, as in production;
* baseline, same run, same messages (rendered by the same templates beforehand, so the
  baseline is not charged for rendering): `yag.send(to, subject, contents, headers)` per message
  on one `yagmail.SMTP` object, which connects again for every message (yagmail 0.16 `send()`
  calls `login()`). It runs on the first `--baseline-messages` of them (default 2,000: its rate
  is flat per message, and 10,000 at ~40 msg/s would take four minutes);
* materialisation: `materialise_intents` (owed invitations -> outbox rows) at each size of
  `--materialise` (default 100,000), and EXPLAIN ANALYZE of the "what is owed" scan
  (`owed_id_range`) with and without a partial index `ON invitations (id) WHERE
  messages_attempt < attempt`, both while every invitation is owed and after materialising
  (the steady state: nothing owed). The index is created and dropped here only: no migration.

Targets (issue 9): with latency >= 10x the baseline and >= 400 msg/s; without latency
>= 700 msg/s. A miss is reported (MISSED), not an error: the script exits 0 when it ran.
Everything runs in the database `openslots_bench_dispatch` (created if missing, its `public`
schema dropped and recreated per round); the database `test` is never touched.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import _postgres
from _postgres import PG_HOST, PG_PORT, PG_USER

ROOT = Path(__file__).resolve().parent.parent

BENCH_DB = "openslots_bench_dispatch"
APP_NAME = "openslots-bench-dispatch"
PROVIDER, LOCATION = "Bench Provider", "Bench Location"
FROM = "alerts@clinic.example"
TARGET_LATENCY_RATIO = 10.0
TARGET_LATENCY_RATE = 400.0
TARGET_RATE = 700.0
PARTIAL_INDEX = "bench_invitations_owed"


def _conninfo(dbname: str) -> str:
    return _postgres.conninfo(dbname, APP_NAME)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- database


def ensure_database() -> None:
    _postgres.ensure_database(BENCH_DB, APP_NAME)


def fresh_schema() -> None:
    """Drop and recreate `public`, then migrate it to this code's revision."""
    _postgres.fresh_schema(BENCH_DB, APP_NAME)


def sql(statement: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(_conninfo(BENCH_DB), autocommit=True) as conn:
        cursor = conn.execute(statement)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def import_people(count: int, seed: int, home: Path) -> float:
    """Seeded synthetic email-only roster through the roster tasks; returns seconds."""
    from openslots import synthetic
    from openslots.tasks.roster import apply_roster, stage_roster, start_import

    path = home / f"roster-{count}.csv"
    rows = (p.row() for p in synthetic.people(count, seed=seed, phone_share=0.0))
    synthetic.write_roster(path, rows)
    start = time.perf_counter()
    begun = start_import.fn(str(path), PROVIDER, LOCATION, "invite", False, False)
    staged = stage_roster.fn(begun.batch_id, str(path))
    summary = apply_roster.fn(begun.batch_id, staged)
    seconds = time.perf_counter() - start
    queued = summary.as_dict().get("queued_invitations")
    if queued != count:
        _log(f"WARNING: {queued} invitations queued of {count} rows")
    path.unlink()
    return seconds


# --------------------------------------------------------------------------- the relay

# The sink runs in its own process, as a relay would: in this one it would share the GIL with
# the sixteen sending threads and measure itself as much as the dispatcher.
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


# --------------------------------------------------------------------------- dispatch


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
    start = time.perf_counter()
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
    seconds = time.perf_counter() - start
    with contextlib.suppress(Exception):
        yag.close()
    return seconds


def dispatch_round(
    sink: RemoteSink,
    latency: float,
    messages: int,
    baseline: int,
    seed: int,
    home: Path,
    profile: bool,
) -> dict[str, Any]:
    """Fresh schema, import, materialise, dispatch, then the yagmail loop on the same sink."""
    from openslots.tasks.dispatch import dispatch_outbox, materialise_intents

    label = f"latency {latency * 1000:.0f} ms"
    fresh_schema()
    import_s = import_people(messages, seed, home)
    start = time.perf_counter()
    materialised = materialise_intents.fn()
    materialise_s = time.perf_counter() - start
    rendered = render_all()[:baseline]
    sink.ask(f"delay {latency}")
    sink.ask("clear")
    _log(f"[{label}] {materialised:,} messages materialised; dispatching")
    profiler = cProfile.Profile() if profile else None
    load_before = os.getloadavg()
    start = time.perf_counter()
    with profiler or contextlib.nullcontext():
        counts = dispatch_outbox.fn()
    dispatch_s = time.perf_counter() - start
    relay = sink.ask("stats")
    received, connections = relay["received"], relay["connections"]
    duplicates = relay["received"] - relay["distinct"]
    _log(f"[{label}] dispatch {counts.sent:,} sent in {dispatch_s:.2f} s; baseline loop")
    sink.ask("clear")
    baseline_s = yagmail_loop(rendered, sink.host, sink.port)
    relay = sink.ask("stats")
    baseline_connections = relay["connections"]
    if relay["received"] != len(rendered):
        _log(f"WARNING: the baseline delivered {relay['received']} of {len(rendered)}")
    result = {
        "latency_ms": round(latency * 1000),
        "messages": messages,
        "import_s": round(import_s, 2),
        "materialise_s": round(materialise_s, 3),
        "dispatch_s": round(dispatch_s, 3),
        "dispatch_msg_s": round(counts.sent / dispatch_s, 1),
        "counts": counts.as_dict(),
        "received": received,
        "duplicates": duplicates,
        "smtp_connections": connections,
        "load_avg_before": [round(x, 2) for x in load_before],
        "baseline_messages": len(rendered),
        "baseline_s": round(baseline_s, 3),
        "baseline_msg_s": round(len(rendered) / baseline_s, 1),
        "baseline_smtp_connections": baseline_connections,
    }
    result["ratio"] = round(result["dispatch_msg_s"] / result["baseline_msg_s"], 1)
    if profiler is not None:
        path = home / f"dispatch-{result['latency_ms']}ms.prof"
        profiler.dump_stats(path)
        result["profile"] = str(path)
    return result


# --------------------------------------------------------------------------- materialisation


def owed_scan_sql() -> str:
    """The statement `owed_id_range` runs, with its values inlined (for EXPLAIN ANALYZE)."""
    from sqlalchemy import func, select
    from sqlalchemy.dialects import postgresql

    from openslots.connectors.database import outbox as repo
    from openslots.connectors.database.models import Invitation

    query = select(func.min(Invitation.id), func.max(Invitation.id)).where(repo._owed())
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def explain(statement: str) -> dict[str, Any]:
    rows = sql(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}")
    plan = rows[0][0][0]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(
            node["Node Type"]
            + (f" on {node['Relation Name']}" if "Relation Name" in node else "")
            + (f" using {node['Index Name']}" if "Index Name" in node else "")
        )
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return {"ms": round(plan["Execution Time"], 2), "plan": nodes}


def with_partial_index(statement: str) -> dict[str, Any]:
    start = time.perf_counter()
    sql(f"CREATE INDEX {PARTIAL_INDEX} ON invitations (id) WHERE messages_attempt < attempt")
    build_s = time.perf_counter() - start
    sql("ANALYZE invitations")
    try:
        return explain(statement) | {"index_build_s": round(build_s, 2)}
    finally:
        sql(f"DROP INDEX {PARTIAL_INDEX}")


def materialise_round(count: int, seed: int, home: Path) -> dict[str, Any]:
    from openslots.tasks.dispatch import materialise_intents

    fresh_schema()
    _log(f"[materialise {count:,}] importing")
    import_s = import_people(count, seed, home)
    sql("ANALYZE invitations")
    scan = owed_scan_sql()
    owed = {"no_index": explain(scan), "partial_index": with_partial_index(scan)}
    start = time.perf_counter()
    written = materialise_intents.fn()
    materialise_s = time.perf_counter() - start
    sql("ANALYZE invitations")
    nothing_owed = {"no_index": explain(scan), "partial_index": with_partial_index(scan)}
    start = time.perf_counter()
    assert materialise_intents.fn() == 0
    idle_s = time.perf_counter() - start
    _log(f"[materialise {count:,}] {written:,} rows in {materialise_s:.2f} s")
    return {
        "invitations": count,
        "import_s": round(import_s, 2),
        "materialise_s": round(materialise_s, 3),
        "rows_written": written,
        "rows_per_s": round(written / materialise_s),
        "materialise_nothing_owed_s": round(idle_s, 3),
        "owed_scan_all_owed": owed,
        "owed_scan_nothing_owed": nothing_owed,
    }


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    versions = {}
    for name in ("yagmail", "aiosmtpd", "sqlalchemy", "psycopg", "prefect"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    versions["python"] = platform.python_version()
    versions["postgresql"] = sql("SHOW server_version")[0][0]
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "openslots"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "versions": versions,
        "code": (head or "unknown") + ("+dirty" if dirty else ""),
    }


def verdicts(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    slow, fast = rounds  # with --latency, then without
    return {
        "latency_ratio": slow["ratio"],
        "latency_ratio_ok": slow["ratio"] >= TARGET_LATENCY_RATIO,
        "latency_rate": slow["dispatch_msg_s"],
        "latency_rate_ok": slow["dispatch_msg_s"] >= TARGET_LATENCY_RATE,
        "rate": fast["dispatch_msg_s"],
        "rate_ok": fast["dispatch_msg_s"] >= TARGET_RATE,
        "no_duplicates": all(r["duplicates"] == 0 for r in rounds),
        "all_sent": all(r["counts"]["sent"] == r["messages"] for r in rounds),
    }


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"machine: {m['cores']} cores, load average {m['load_avg']} at the end; "
        f"{m['platform']}; code {m['code']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(f"dispatch connections: {report['connections']}\n")
    header = (
        f"{'latency':>8} {'messages':>9} {'dispatch s':>10} {'msg/s':>8} {'conns':>6} "
        f"{'baseline n':>10} {'baseline s':>10} {'msg/s':>8} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in report["rounds"]:
        print(
            f"{r['latency_ms']:>6} ms {r['messages']:>9,} {r['dispatch_s']:>10.2f} "
            f"{r['dispatch_msg_s']:>8,.0f} {r['smtp_connections']:>6} "
            f"{r['baseline_messages']:>10,} {r['baseline_s']:>10.2f} "
            f"{r['baseline_msg_s']:>8,.0f} {r['ratio']:>6.1f}x"
        )
    for r in report["rounds"]:
        print(
            f"  ({r['latency_ms']} ms: load average before dispatch {r['load_avg_before']}, "
            f"materialise {r['materialise_s']} s, duplicates {r['duplicates']}, "
            f"baseline SMTP connections {r['baseline_smtp_connections']})"
        )
    for r in report["materialisation"]:
        print(
            f"\nmaterialise {r['invitations']:,} invitations -> {r['rows_written']:,} rows: "
            f"{r['materialise_s']:.2f} s ({r['rows_per_s']:,} rows/s); nothing owed: "
            f"{r['materialise_nothing_owed_s']:.3f} s"
        )
        for state in ("owed_scan_all_owed", "owed_scan_nothing_owed"):
            scan = r[state]
            print(
                f"  {state}: no index {scan['no_index']['ms']} ms "
                f"({' > '.join(scan['no_index']['plan'])}); partial index "
                f"{scan['partial_index']['ms']} ms ({' > '.join(scan['partial_index']['plan'])}, "
                f"built in {scan['partial_index']['index_build_s']} s)"
            )
    v = report["targets"]

    def mark(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print("\nTargets:")
    print(
        f"  with latency >= {TARGET_LATENCY_RATIO:.0f}x baseline: {v['latency_ratio']}x  "
        f"{mark(v['latency_ratio_ok'])}"
    )
    print(
        f"  with latency >= {TARGET_LATENCY_RATE:.0f} msg/s: {v['latency_rate']:,.0f}  "
        f"{mark(v['latency_rate_ok'])}"
    )
    print(f"  without latency >= {TARGET_RATE:.0f} msg/s: {v['rate']:,.0f}  {mark(v['rate_ok'])}")
    print(f"  every message delivered once: {mark(v['no_duplicates'] and v['all_sent'])}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument(
        "--baseline-messages", type=int, default=2_000, help="messages the yagmail loop sends"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per message")
    parser.add_argument(
        "--materialise",
        default="100000",
        help="comma-separated invitation counts for the materialisation timing (0: skip)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the dispatch (main thread only)"
    )
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="openslots-bench-dispatch-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    environment = {
        "OPENSLOTS_DATABASE_URL": f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/"
        f"{BENCH_DB}?application_name={APP_NAME}",
        "OPENSLOTS_HOME": str(home),
        "OPENSLOTS_EMAIL_BACKEND": "smtp",
        "OPENSLOTS_SMTP_HOST": "127.0.0.1",
        "OPENSLOTS_SMTP_STARTTLS": "false",
        "OPENSLOTS_EMAIL_FROM": FROM,
        "OPENSLOTS_SECRET_KEY": "bench-secret-key-not-for-production",
        "OPENSLOTS_DISPATCH_CONNECTIONS": str(args.connections),
        "OPENSLOTS_SMS_QUIET_HOURS": "off",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    os.environ.update(environment)
    logging_quiet()
    ensure_database()
    baseline = min(args.baseline_messages, args.messages)
    rounds = []
    sink = RemoteSink()
    try:
        os.environ["OPENSLOTS_SMTP_PORT"] = str(sink.port)
        for latency in (args.latency, 0.0):
            rounds.append(
                dispatch_round(
                    sink, latency, args.messages, baseline, args.seed, home, args.profile
                )
            )
    finally:
        sink.close()
    materialisation = [
        materialise_round(int(n), args.seed, home)
        for n in args.materialise.split(",")
        if int(n) > 0
    ]
    fresh_schema()
    report = {
        "connections": args.connections,
        "rounds": rounds,
        "materialisation": materialisation,
        "machine": machine(),
    }
    report["targets"] = verdicts(rounds)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    if args.profile:
        for r in rounds:
            pstats.Stats(r["profile"], stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return 0


def logging_quiet() -> None:
    """The worker logs a line per batch at INFO; keep stderr for the benchmark's progress."""
    import logging

    logging.getLogger("openslots").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
