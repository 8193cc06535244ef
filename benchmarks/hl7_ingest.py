"""Benchmark: HL7 ADT ingest (file drop and MLLP) against hl7apy parsing the same messages.

Run (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python benchmarks/hl7_ingest.py                        # 100,000 messages
    .venv/bin/python benchmarks/hl7_ingest.py --sqlite               # a SQLite file instead
    .venv/bin/python benchmarks/hl7_ingest.py --json                 # machine-readable
    .venv/bin/python benchmarks/hl7_ingest.py --messages 20000 --hl7apy-sample 500 \
        --mllp-per-sender 500 --profile /tmp/hl7.prof                # quick, with a profile

What it measures, on N seeded synthetic ADT messages (A04 Epic-style, A08 Cerner-style, A28
Meditech-style, as in tests/hl7_messages.py; distinct control ids and MRNs, ~50 % with an
email, ~70 % with a phone, ~10 % minors with a guardian NK1, one of 5 doctors and clinics),
written `\\r`-separated to 100 files of N/100 messages:

* baseline: `hl7apy.parser.parse_message(text, find_groups=False)` over a sample, msg/s;
* the fast parser alone: `parse` + `extract_patient` over every message;
* end to end: the flow `hl7_import([dir])` (store every message, then apply them: validation,
  clients, invitations), after a warm-up flow has started Prefect's temporary server (its
  start-up is reported apart); msg/s and the ratio to hl7apy's rate;
* where the time goes: the same import on a fresh schema through `store_files.fn` and
  `ingest_stored.fn`, with timers around the store, parser and repository functions (and,
  with --profile FILE, once more under cProfile);
* MLLP: `MllpListener` on a loopback port (its own asyncio loop in a thread, no ingest), 8
  sender threads each sending M messages one after another, each waiting for its ACK (sent
  after the commit); msg/s, and every ACK must be AA.

Everything runs in the dedicated database `openslots_bench` (created if missing; its `public`
schema is dropped and recreated before each phase; --database openslots_bench_x picks another
of that prefix when someone else is using it), or with --sqlite in a SQLite file in a
temporary OPENSLOTS_HOME. The database `test` is never touched. Before starting, the script
waits (--wait-alone) until no one else has a session on the database, then samples, while it
runs, the load average and any other session on it, and says so in the report.

Targets: end to end >= 5,000 msg/s and >= 50x hl7apy; MLLP >= 2,000 msg/s from 8 senders. A
miss is reported, not an error: this is a measurement, it exits 0 whenever it ran.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import datetime as dt
import json
import os
import pstats
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _timers import Timers

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
BENCH_DB = "openslots_bench"
# Our sessions carry this name, so sessions of anyone else on the database can be told apart.
APP_NAME = "openslots-hl7-bench"
TARGET_RATE = 5_000.0
TARGET_VS_HL7APY = 50.0
TARGET_MLLP = 2_000.0
START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\r"
# Fixed dates keep the data reproducible: message times and ages are counted from here.
REFERENCE = dt.datetime(2026, 11, 20, 8, 0, 0)

# (doctor id, family, given, unit, clinic): PV1-7 and PV1-3 (the clinic is the location).
SITES = (
    ("D77", "Rivera", "Maria", "CARDIO", "NORTHCLINIC"),
    ("D12", "Osei", "Kwame", "PEDS", "KIDSCARE"),
    ("D3", "Haddad", "Samir", "ORTHO", "EASTSIDE"),
    ("D9", "Weiß", "Anna", "GEN", "WESTCLINIC"),
    ("D41", "Kim", "Min-jun", "WARD7", "SOUTHHOSP"),
)
STYLES = (("A04", 0.4), ("A08", 0.35), ("A28", 0.25))


def _conninfo(dbname: str) -> str:
    if dbname != "postgres" and not dbname.startswith(BENCH_DB):  # never `test`, nor others
        raise SystemExit(f"refusing to use the database {dbname!r}")
    return (
        f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname} application_name={APP_NAME}"
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- messages


def _ascii(text: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain.lower().replace("'", "").replace(" ", "")


def generate_messages(count: int, seed: int) -> list[bytes]:
    """`count` synthetic ADT messages (UTF-8, `\\r` between segments, no trailing `\\r`)."""
    from openslots.synthetic import AREA_CODES, FIRST, LAST

    rng = random.Random(seed)
    styles, weights = zip(*STYLES, strict=True)
    messages: list[bytes] = []
    for n in range(1, count + 1):
        style = rng.choices(styles, weights)[0]
        doctor, doctor_family, doctor_given, unit, clinic = rng.choice(SITES)
        given, family = rng.choice(FIRST), rng.choice(LAST)
        minor = rng.random() < 0.10
        age_days = rng.randint(365, 17 * 365) if minor else rng.randint(18 * 365, 95 * 365)
        dob = (REFERENCE.date() - dt.timedelta(days=age_days)).strftime("%Y%m%d")
        sex = rng.choice("FMFMU")
        stamp = (REFERENCE + dt.timedelta(seconds=n)).strftime("%Y%m%d%H%M%S")
        email = f"{_ascii(given)}.{_ascii(family)}.{n}@example.org" if rng.random() < 0.5 else ""
        phone = (rng.choice(AREA_CODES), f"55501{n % 100:02d}") if rng.random() < 0.7 else None
        address = f"{rng.randint(1, 999)} Main St^^Town^NY^{rng.randint(10001, 10299)}"
        guardian = None
        if minor and rng.random() < 0.8:
            guardian = (
                rng.choice(FIRST),
                family,
                rng.choice(("MTH^Mother", "FTH^Father", "GRD^Guardian")),
                f"guardian.{n}@example.org" if rng.random() < 0.6 else "",
                (rng.choice(AREA_CODES), f"55501{(n + 7) % 100:02d}")
                if rng.random() < 0.7
                else None,
            )
        if style == "A04":  # Epic: typed MR beside SS, XTN with country code, MSH-18 UTF-8
            xtn = []
            if phone:
                if rng.random() < 0.3:
                    xtn.append(f"^PRN^PH^^1^{phone[0]}^{rng.randint(2000000, 9999999)}")
                xtn.append(f"^PRN^CP^^1^{phone[0]}^{phone[1]}")
            if email:
                xtn.append(f"^NET^Internet^{email}")
            segments = [
                f"MSH|^~\\&|EPIC|{clinic}|OPENSLOTS|OS|{stamp}||ADT^A04^ADT_A01|EPC{n:08d}|P|"
                "2.5.1|||||||UNICODE UTF-8",
                f"EVN|A04|{stamp}",
                f"PID|1||E{n:08d}^^^NORTH^MR~{900000000 + n}^^^SSA^SS||{family}^{given}^"
                f"{rng.choice('ABCDEJMR')}||{dob}|{sex}|||{address}||{'~'.join(xtn)}",
            ]
            pv1 = f"PV1|1|O|{unit}^101^1^{clinic}||||{doctor}^{doctor_family}^{doctor_given}^^^Dr"
            pv1 += f"|||||||||||V{n}"
        elif style == "A08":  # Cerner: untyped old-style phone in XTN.1, v2.3, no MSH-18
            xtn = []
            if phone:
                xtn.append(f"({phone[0]}){phone[1][:3]}-{phone[1][3:]}")
            if email:
                xtn.append(f"^NET^Internet^{email}")
            segments = [
                f"MSH|^~\\&|CERNER|{clinic}|OPENSLOTS|OS|{stamp[:12]}||ADT^A08|CRN-{n:08d}|P|2.3",
                f"EVN|A08|{stamp[:12]}",
                f"PID|1||C{n:08d}^^^SOUTH^MR||{family}^{given}||{dob}|{sex}|||{address}||"
                + "~".join(xtn),
            ]
            pv1 = f"PV1|1|I|{unit}^12^B^{clinic}||||{doctor}^{doctor_family}^{doctor_given}"
        else:  # Meditech A28: NK1 for minors, a Z-segment
            xtn = []
            if email:
                xtn.append(f"^NET^Internet^{email}")
            if phone:
                xtn.append(f"^PRN^CP^^^{phone[0]}^{phone[1]}")
            segments = [
                f"MSH|^~\\&|MEDITECH|{clinic}|OPENSLOTS|OS|{stamp}||ADT^A28^ADT_A05|MT-{n:08d}|P|"
                "2.4",
                f"EVN|A28|{stamp}",
                f"PID|1||K{n:08d}^^^KIDS^MR||{family}^{given}||{dob}|{sex}|||{address}||"
                + "~".join(xtn),
            ]
            pv1 = f"PV1|1|O|{unit}^^^{clinic}||||{doctor}^{doctor_family}^{doctor_given}"
        if guardian is not None:
            g_given, g_family, relation, g_email, g_phone = guardian
            g_xtn = [f"^NET^Internet^{g_email}"] if g_email else []
            if g_phone:
                g_xtn.append(f"^PRN^CP^^^{g_phone[0]}^{g_phone[1]}")
            segments.append(f"NK1|1|{g_family}^{g_given}|{relation}|||{'~'.join(g_xtn)}")
        segments.append(pv1)
        if style == "A28":
            segments.append("ZPD|custom|data")
        messages.append("\r".join(segments).encode("utf-8"))
    return messages


def write_files(directory: Path, messages: list[bytes], files: int) -> list[Path]:
    """Messages one after another, `\\r` after each, split evenly over `files` files."""
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(messages) // files)
    paths = []
    for index, start in enumerate(range(0, len(messages), per_file)):
        path = directory / f"adt-{index:04d}.hl7"
        path.write_bytes(b"".join(m + b"\r" for m in messages[start : start + per_file]))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- parsers


def rate_hl7apy(messages: list[bytes]) -> dict[str, Any]:
    from hl7apy.parser import parse_message

    texts = [m.decode("utf-8") for m in messages]
    failed = 0
    start = time.perf_counter()
    for text in texts:
        try:
            parse_message(text, find_groups=False)
        except Exception:
            failed += 1
    seconds = time.perf_counter() - start
    return {
        "messages": len(texts),
        "failed": failed,
        "seconds": round(seconds, 3),
        "rate": len(texts) / seconds,
    }


def rate_fast_parser(messages: list[bytes]) -> dict[str, Any]:
    from openslots.connectors.hl7.parser import extract_patient, parse

    start = time.perf_counter()
    with_mrn = sum(1 for raw in messages if extract_patient(parse(raw)).mrn)
    seconds = time.perf_counter() - start
    assert with_mrn == len(messages), (with_mrn, len(messages))
    return {
        "messages": len(messages),
        "seconds": round(seconds, 3),
        "rate": len(messages) / seconds,
    }


# --------------------------------------------------------------------------- database


class Database:
    """The benchmark's database: `openslots_bench` on PostgreSQL, or a SQLite file."""

    def __init__(self, sqlite: bool, home: Path, dbname: str = BENCH_DB):
        _conninfo(dbname)  # refuses `test` and anything not named like the bench database
        self.sqlite = sqlite
        self.dbname = dbname
        self.path = home / "bench.db"
        self.url = (
            f"sqlite:///{self.path}"
            if sqlite
            else f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"
            f"?application_name={APP_NAME}"
        )

    @property
    def name(self) -> str:
        return "SQLite" if self.sqlite else f"PostgreSQL ({self.dbname})"

    def ensure(self) -> None:
        if self.sqlite:
            return
        import psycopg

        with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def reset(self) -> None:
        """An empty, migrated schema (pooled connections dropped first)."""
        from openslots.connectors.database import upgrade_database
        from openslots.connectors.database.engine import dispose_engines

        dispose_engines()
        if self.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        else:
            import psycopg

            with psycopg.connect(_conninfo(self.dbname), autocommit=True) as conn:
                others = _foreign_sessions(conn, self.dbname)
                if others:
                    _log(f"WARNING: others on {self.dbname} ({others}): figures may be off")
                conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
                conn.execute("CREATE SCHEMA public")
        upgrade_database()

    def wait_until_alone(self, limit_s: float) -> list[str]:
        """Wait (up to `limit_s`) until no one else uses the database; returns who still does."""
        if self.sqlite:
            return []
        import psycopg

        deadline = time.monotonic() + limit_s
        with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
            while (others := _foreign_sessions(conn, self.dbname)) and time.monotonic() < deadline:
                _log(f"waiting: other sessions on {self.dbname} ({others})")
                time.sleep(10)
        return others

    def counts(self) -> dict[str, int]:
        from sqlalchemy import text

        from openslots.connectors.database import get_engine

        queries = {
            "hl7_messages": "SELECT count(*) FROM hl7_messages",
            "applied": "SELECT count(*) FROM hl7_messages WHERE status = 'applied'",
            "clients": "SELECT count(*) FROM clients",
            "invitations": "SELECT count(*) FROM invitations",
            "outbox": "SELECT count(*) FROM outbox",
        }
        with get_engine().connect() as conn:
            return {k: int(conn.execute(text(q)).scalar_one()) for k, q in queries.items()}


def _foreign_sessions(conn: Any, dbname: str) -> list[str]:
    """Application names of sessions on the bench database that are not ours."""
    rows = conn.execute(
        "SELECT coalesce(nullif(application_name, ''), '?') FROM pg_stat_activity "
        "WHERE datname = %s AND application_name IS DISTINCT FROM %s AND pid <> pg_backend_pid()",
        (dbname, APP_NAME),
    ).fetchall()
    return sorted({name for (name,) in rows})


class Monitor:
    """Samples, once a second, the load average and anyone else's sessions on the database: a
    benchmark sharing a 2-core machine with other work measures that work too."""

    def __init__(self, database: Database):
        self.database = database
        self.load_at_start = self.max_load = os.getloadavg()[0]
        self.foreign: set[str] = set()
        self.foreign_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        conn = None
        if not self.database.sqlite:
            import psycopg

            with contextlib.suppress(Exception):
                conn = psycopg.connect(_conninfo("postgres"), autocommit=True)
        try:
            while not self._stop.wait(1.0):
                self.max_load = max(self.max_load, os.getloadavg()[0])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        if others := _foreign_sessions(conn, self.database.dbname):
                            self.foreign.update(others)
                            self.foreign_samples += 1
        finally:
            if conn is not None:
                conn.close()

    def as_dict(self) -> dict[str, Any]:
        return {
            "load_at_start": round(self.load_at_start, 2),
            "max_load_1min": round(self.max_load, 2),
            "foreign_sessions": sorted(self.foreign),
            "seconds_with_foreign_sessions": self.foreign_samples,
        }


# --------------------------------------------------------------------------- timers


def _install_timers(timers: Timers) -> None:
    from openslots.connectors.database import hl7_store
    from openslots.connectors.database import roster as repo
    from openslots.tasks import hl7 as tasks
    from openslots.tasks import hl7_receive as receiver
    from openslots.tasks import roster as roster_tasks

    timers.wrap(tasks, "split_messages", "store: split_messages (read files)")
    timers.wrap(tasks, "receive", "store: receive")
    timers.wrap(receiver, "parse", "store:   parse (per message)")
    timers.wrap(receiver, "precheck", "store:   precheck (per message)")
    timers.wrap(receiver, "store_messages", "store:   store_messages")
    timers.wrap(hl7_store, "claim_stored", "ingest: claim_stored")
    timers.wrap(tasks, "parse", "ingest: parse (per message)")
    timers.wrap(tasks, "extract_patient", "ingest: extract_patient (per message)")
    timers.wrap(tasks, "_apply_patients", "ingest: _apply_patients")
    timers.wrap(tasks, "_provider_exists", "ingest:   _provider_exists")
    timers.wrap(tasks, "validate_chunk", "ingest:   validate_chunk (pandera)")
    timers.wrap(repo, "start_batch", "ingest:   repo.start_batch")
    timers.wrap(repo, "stage_rows", "ingest:   repo.stage_rows")
    timers.wrap(tasks, "apply_batch", "ingest:   apply_batch")
    for name in (
        "reject_in_file_duplicates",
        "match_connections",
        "count_client_changes",
        "upsert_clients",
        "apply_mrn_updates",
        "queue_invitations",
        "clear_staging",
        "finish_batch",
    ):
        timers.wrap(repo, name, f"ingest:     repo.{name}")
    timers.wrap(repo, "record_findings", "ingest:   repo.record_findings (all calls)")
    timers.wrap(hl7_store, "mark", "ingest: mark (all calls)")
    assert roster_tasks.repo is repo  # apply_batch's repository calls go through these wrappers


def run_task_functions(directory: Path, profile: Path | None) -> dict[str, Any]:
    """store_files.fn then ingest_stored.fn, each timed, inner calls timed (or profiled)."""
    from openslots.tasks.hl7 import ingest_stored, store_files

    timers = Timers()
    if profile is None:
        _install_timers(timers)
    profiler = cProfile.Profile() if profile else None
    tasks: dict[str, float] = {}
    try:
        with profiler or contextlib.nullcontext():
            start = time.perf_counter()
            stored = store_files.fn([str(directory)])
            tasks["store_files"] = time.perf_counter() - start
            start = time.perf_counter()
            applied = ingest_stored.fn()
            tasks["ingest_stored"] = time.perf_counter() - start
    finally:
        timers.restore()
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    return {
        "tasks_s": {k: round(v, 3) for k, v in tasks.items()},
        **timers.report(),
        "stored": stored.as_dict(),
        "applied": applied.as_dict(),
    }


# --------------------------------------------------------------------------- MLLP


def _read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END_BLOCK):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        data += chunk
    return data[1:-2]


def _sender(port: int, messages: list[bytes], barrier: threading.Barrier) -> dict[str, Any]:
    codes: dict[str, int] = defaultdict(int)
    wrong_control = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        barrier.wait()
        start = time.perf_counter()
        for message in messages:
            sock.sendall(START_BLOCK + message + END_BLOCK)
            ack = _read_ack(sock)
            msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA")).split(b"|")
            codes[msa[1].decode()] += 1
            control = message.split(b"\r", 1)[0].split(b"|")[9]
            wrong_control += msa[2] != control
        seconds = time.perf_counter() - start
    return {"codes": dict(codes), "wrong_control": wrong_control, "seconds": seconds}


def run_mllp(messages: list[bytes], senders: int, per_sender: int) -> dict[str, Any]:
    """The listener in a thread with its own loop; `senders` threads, one connection each."""
    import asyncio

    from openslots.connectors.hl7.mllp import MllpListener, Reply
    from openslots.resources import resources
    from openslots.tasks.hl7_receive import StoreThenAck

    needed = senders * per_sender
    if needed > len(messages):
        raise SystemExit(f"MLLP needs {needed} messages, only {len(messages)} generated")
    res = resources()
    groups: list[int] = []
    store_seconds = [0.0]

    class CountedHandler(StoreThenAck):
        """The real handler, timed: one call per group commit."""

        def handle(self, raws: list[bytes]) -> list[Reply]:
            start = time.perf_counter()
            try:
                return super().handle(raws)
            finally:
                store_seconds[0] += time.perf_counter() - start
                groups.append(len(raws))

    handler = CountedHandler(res.engine, res.settings.hl7_assigning_authority)
    server = MllpListener(handler, "127.0.0.1", 0, on_batch=None)
    loop = asyncio.new_event_loop()
    task = loop.create_task(server.serve())

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=serve, name="mllp-listener", daemon=True)
    thread.start()
    for _ in range(200):
        if server.ready.is_set():
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the MLLP listener did not start")
    barrier = threading.Barrier(senders + 1)
    results: list[dict[str, Any]] = [{} for _ in range(senders)]

    def run(index: int) -> None:
        chunk = messages[index * per_sender : (index + 1) * per_sender]
        results[index] = _sender(server.port, chunk, barrier)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(senders)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    time.sleep(0.3)  # let the connection handlers see the senders' EOF before the loop stops
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=10)
    codes: dict[str, int] = defaultdict(int)
    for result in results:
        for code, n in result.get("codes", {}).items():
            codes[code] += n
    return {
        "senders": senders,
        "per_sender": per_sender,
        "messages": needed,
        "seconds": round(seconds, 3),
        "rate": needed / seconds,
        "acks": dict(codes),
        "all_aa": codes.get("AA", 0) == needed,
        "wrong_control_ids": sum(r.get("wrong_control", 0) for r in results),
        "group_commits": len(groups),
        "mean_group": round(sum(groups) / len(groups), 1) if groups else 0,
        "store_s": round(store_seconds[0], 3),
    }


# --------------------------------------------------------------------------- main run


def measure(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="openslots-hl7-bench-"))
    # Registered before Prefect's own exit handlers, so it runs after its server has stopped.
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    database = Database(args.sqlite, home, args.database)
    os.environ["OPENSLOTS_DATABASE_URL"] = database.url
    os.environ["OPENSLOTS_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    result: dict[str, Any] = {
        "messages": args.messages,
        "files": args.files,
        "seed": args.seed,
        "database": database.name,
    }
    database.ensure()
    if still := database.wait_until_alone(args.wait_alone):
        _log(f"WARNING: starting while others use {database.dbname} ({still})")
    with Monitor(database) as monitor:
        _measure(args, home, database, result)
    result["environment"] = monitor.as_dict()
    from openslots.connectors.database.engine import dispose_engines

    dispose_engines()
    return result


def _measure(
    args: argparse.Namespace, home: Path, database: Database, result: dict[str, Any]
) -> None:
    start = time.perf_counter()
    messages = generate_messages(args.messages, args.seed)
    directory = home / "drop"
    write_files(directory, messages, args.files)
    result["generate_s"] = round(time.perf_counter() - start, 2)
    result["mean_message_bytes"] = round(sum(map(len, messages)) / len(messages))
    _log(f"generated {len(messages):,} messages in {result['generate_s']} s")

    step = max(1, len(messages) // max(1, args.hl7apy_sample))
    result["hl7apy"] = rate_hl7apy(messages[::step][: args.hl7apy_sample])
    _log(f"hl7apy {result['hl7apy']['rate']:,.0f} msg/s")
    result["fast_parser"] = rate_fast_parser(messages)
    _log(f"fast parser {result['fast_parser']['rate']:,.0f} msg/s")

    # Imports after the environment is set: settings and Prefect read it.
    from prefect import flow

    from openslots.flows.hl7_ingest import hl7_import

    database.reset()

    @flow(name="bench-warm-up", persist_result=False)
    def warm_up() -> int:
        return 1

    start = time.perf_counter()
    warm_up()
    result["prefect_warmup_s"] = round(time.perf_counter() - start, 2)

    start = time.perf_counter()
    counts = hl7_import([str(directory)])
    seconds = time.perf_counter() - start
    result["end_to_end"] = {
        "seconds": round(seconds, 3),
        "rate": args.messages / seconds,
        "counts": counts,
        "database": database.counts(),
    }
    _log(f"end to end {seconds:.2f} s, {args.messages / seconds:,.0f} msg/s: {counts}")
    if counts.get("applied") != args.messages or counts.get("errors"):
        _log(f"WARNING: applied {counts.get('applied')} of {args.messages}")

    database.reset()
    result["tasks"] = run_task_functions(directory, None)
    _log(f"task functions {result['tasks']['tasks_s']}")

    if args.profile is not None:
        database.reset()
        run_task_functions(directory, args.profile)
        _log(f"profile written to {args.profile}")

    if args.mllp_per_sender:
        database.reset()
        result["mllp"] = run_mllp(messages, args.mllp_senders, args.mllp_per_sender)
        result["mllp"]["stored"] = database.counts()["hl7_messages"]
        _log(f"MLLP {result['mllp']['rate']:,.0f} msg/s, ACKs {result['mllp']['acks']}")


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    e2e = result["end_to_end"]["rate"]
    ratio = e2e / result["hl7apy"]["rate"]
    out: dict[str, Any] = {
        "end_to_end_rate": round(e2e),
        "end_to_end_ok": e2e >= TARGET_RATE,
        "ratio_to_hl7apy": round(ratio, 1),
        "ratio_ok": ratio >= TARGET_VS_HL7APY,
    }
    if "mllp" in result:
        mllp = result["mllp"]
        out["mllp_rate"] = round(mllp["rate"])
        out["mllp_ok"] = mllp["rate"] >= TARGET_MLLP and mllp["all_aa"]
    return out


def print_report(result: dict[str, Any], verdict: dict[str, Any]) -> None:
    def row(name: str, messages: int, seconds: float) -> None:
        print(f"  {name:<50} {messages:>9,} {seconds:>9.2f} {messages / seconds:>10,.0f}")

    n = result["messages"]
    print(
        f"HL7 ingest benchmark: {n:,} ADT messages in {result['files']} files "
        f"(~{result['mean_message_bytes']} bytes each), {result['database']}, "
        f"seed {result['seed']}"
    )
    print(f"  {'measure':<50} {'messages':>9} {'seconds':>9} {'msg/s':>10}")
    print("  " + "-" * 81)
    hl7apy, fast = result["hl7apy"], result["fast_parser"]
    row("hl7apy parse_message(find_groups=False), sample", hl7apy["messages"], hl7apy["seconds"])
    row("fast parser: parse + extract_patient", fast["messages"], fast["seconds"])
    e2e = result["end_to_end"]
    row("end to end: hl7_import flow", n, e2e["seconds"])
    for name, seconds in result["tasks"]["tasks_s"].items():
        row(f"  {name}.fn (fresh schema)", n, seconds)
    if "mllp" in result:
        mllp = result["mllp"]
        row(
            f"MLLP: {mllp['senders']} senders x {mllp['per_sender']:,}, ACK after commit",
            mllp["messages"],
            mllp["seconds"],
        )
    if hl7apy["failed"]:
        print(f"  (hl7apy raised on {hl7apy['failed']} of {hl7apy['messages']} messages)")
    print(
        f"\n(Prefect temporary server warm-up, excluded: {result['prefect_warmup_s']} s; "
        f"generating and writing the files: {result['generate_s']} s)"
    )
    print(f"flow counts: {e2e['counts']}")
    print(f"database after the flow: {e2e['database']}")
    tasks = result["tasks"]
    print("\nInside the task functions (cumulative wall time; indented = part of the line above):")
    for name, seconds in tasks["inner_s"].items():
        print(f"    {name:<52} {seconds:>8.2f} s  x{tasks['inner_calls'][name]}")
    if "mllp" in result:
        mllp = result["mllp"]
        print(
            f"\nMLLP: ACKs {mllp['acks']}, wrong MSA-2: {mllp['wrong_control_ids']}, "
            f"stored {mllp['stored']:,}; {mllp['group_commits']:,} group commits "
            f"(mean {mllp['mean_group']} messages), {mllp['store_s']} s in store threads"
        )

    env = result["environment"]
    print(
        f"\nMachine: {os.cpu_count()} CPUs, 1-min load {env['load_at_start']} at start, "
        f"max {env['max_load_1min']} during the run"
    )
    if env["foreign_sessions"]:
        print(
            f"WARNING: others used {result['database']} during "
            f"{env['seconds_with_foreign_sessions']} s "
            f"of the run ({', '.join(env['foreign_sessions'])}): the figures include their load"
        )

    def mark(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print("\nTargets:")
    print(
        f"  end to end >= {TARGET_RATE:,.0f} msg/s: {verdict['end_to_end_rate']:,} msg/s  "
        f"{mark(verdict['end_to_end_ok'])}"
    )
    print(
        f"  end to end >= {TARGET_VS_HL7APY:.0f}x hl7apy: {verdict['ratio_to_hl7apy']}x  "
        f"{mark(verdict['ratio_ok'])}"
    )
    if "mllp_rate" in verdict:
        print(
            f"  MLLP >= {TARGET_MLLP:,.0f} msg/s from {result['mllp']['senders']} senders, all AA: "
            f"{verdict['mllp_rate']:,} msg/s  {mark(verdict['mllp_ok'])}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=100, help="files the messages are split into")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hl7apy-sample", type=int, default=2_000)
    parser.add_argument("--mllp-senders", type=int, default=8)
    parser.add_argument(
        "--mllp-per-sender", type=int, default=2_500, help="messages per sender (0: skip MLLP)"
    )
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--database",
        default=BENCH_DB,
        help=f"PostgreSQL database (its name must start with {BENCH_DB}; `test` is refused)",
    )
    parser.add_argument(
        "--wait-alone",
        type=float,
        default=900,
        help="seconds to wait, before starting, for other sessions on the database to end",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also run the task functions under cProfile (fresh schema) and write stats here",
    )
    args = parser.parse_args(argv)

    result = measure(args)
    verdict = verdicts(result)
    if args.json:
        print(json.dumps({"result": result, "targets": verdict}, indent=2, default=str))
    else:
        print_report(result, verdict)
    if args.profile is not None:
        stats = pstats.Stats(str(args.profile), stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(r"openslots", 40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
