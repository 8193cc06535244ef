"""HL7 scenarios: the file-drop ingest end to end, and the MLLP listener under 8 senders.

* `hl7_file_ingest`: the flow `hl7_import([directory])` (store every message, then apply
  them: validation, clients, invitations) on a fresh migrated schema, N seeded ADT messages in
  100 files, against `hl7apy.parser.parse_message(text, find_groups=False)` over the same
  messages. hl7apy parses ~170 msg/s here, so it parses an evenly spaced sample of them (another
  one each round) and its time is scaled to all N (`baseline_messages` says how many it parsed).
* `mllp_listener`: `MllpListener` with the real handler (`StoreThenAck`: store the group in one
  transaction, then ACK each message) on a loopback port, its own asyncio loop in a thread;
  8 sender threads in a process of their own (as an EHR is: threads beside the listener
  would share its GIL), one connection each, send M messages one after another, each waiting
  for its ACK; against the same senders and listener with a handler that parses each message and
  ACKs it without storing. msg/s and the p50/p99 of the time from sending a message to reading
  its ACK; every ACK must be AA.

The messages (A04 Epic-style, A08 Cerner-style, A28 Meditech-style, as in
tests/hl7_messages.py; distinct control ids and MRNs, ~50 % with an email, ~70 % with a
phone, ~10 % minors with a guardian NK1, one of 5 doctors and clinics) are `\\r`-separated.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import multiprocessing
import random
import socket
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks._suite import Context, Scenario, Timer, log

TARGET_RATE = 5_000.0
TARGET_VS_HL7APY = 30.0
TARGET_MLLP = 2_000.0
FILES = 100
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
STYLES: tuple[tuple[str, float], ...] = (("A04", 0.4), ("A08", 0.35), ("A28", 0.25))


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


def messages_for(ctx: Context) -> list[bytes]:
    """The run's messages (generated once)."""
    key = ("hl7_messages", ctx.size.hl7_messages)
    if key not in ctx.cache:
        with Timer() as timer:
            ctx.cache[key] = generate_messages(ctx.size.hl7_messages, ctx.seed)
        log(f"generated {ctx.size.hl7_messages:,} HL7 messages in {timer.seconds:.1f} s")
    messages: list[bytes] = ctx.cache[key]
    return messages


# --------------------------------------------------------------------------- file drop


def hl7apy_seconds(messages: list[bytes]) -> float:
    from hl7apy.parser import parse_message

    texts = [m.decode("utf-8") for m in messages]
    with Timer() as timer:
        for text in texts:
            parse_message(text, find_groups=False)
    return timer.seconds


class Hl7FileIngest(Scenario):
    name = "hl7_file_ingest"
    uses_prefect = True
    baseline_name = "hl7apy parse_message (sample, scaled)"
    target = f"ratio <= 0.033 (>= {TARGET_VS_HL7APY:g}x faster), >= {TARGET_RATE:,.0f} msg/s"

    def size_label(self) -> str:
        return f"{self.ctx.size.hl7_messages:,} messages"

    def setup(self) -> None:
        self.messages = messages_for(self.ctx)
        self.directory = self.ctx.home / "hl7-drop"
        write_files(self.directory, self.messages, FILES)
        self.ctx.use_postgres()
        # hl7apy loads its structures for a version on first use: not part of any round.
        warm = {tuple(m.split(b"|", 12)[8:12:3]): m for m in self.messages}
        hl7apy_seconds(list(warm.values()))

    def baseline(self, index: int) -> float:
        count = len(self.messages)
        sample = min(self.ctx.size.hl7apy_sample, count)
        step = max(1, count // sample)
        chosen = self.messages[index % step :: step][:sample]
        self.extra["baseline_messages"] = len(chosen)
        return hl7apy_seconds(chosen) * count / len(chosen)

    def measured(self, index: int) -> float:
        from openslots.flows.hl7_ingest import hl7_import

        postgres = self.ctx.use_postgres()
        postgres.fresh_schema()
        with Timer() as timer:
            counts = hl7_import([str(self.directory)])
        # Distinct generated messages: every one applied, none a duplicate or an error.
        accounted = sum(counts.get(k, 0) for k in ("applied", "duplicates", "ignored", "errors"))
        if counts.get("applied") != len(self.messages) or accounted != counts.get("messages"):
            log(f"WARNING: applied {counts.get('applied')} of {len(self.messages)}: {counts}")
        others = postgres.execute(
            "SELECT source, count(*) FROM hl7_messages WHERE source <> 'file' GROUP BY source"
        )
        if others:  # then its counts include messages the round did not bring
            log(f"WARNING: another writer stored messages during the round: {dict(others)}")
        return timer.seconds

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        rate = len(self.messages) / median_s
        self.extra["messages"] = len(self.messages)
        self.extra["msg_per_s"] = round(rate)
        self.extra["baseline_msg_per_s"] = round(len(self.messages) / baseline_s)
        return rate >= TARGET_RATE and baseline_s / median_s >= TARGET_VS_HL7APY


# --------------------------------------------------------------------------- MLLP


class AckWithoutStoring:
    """The baseline's handler: parse each message's header and ACK it AA, storing nothing."""

    def handle(self, raws: list[bytes]) -> list[Any]:
        from openslots.connectors.hl7.ack import ack
        from openslots.connectors.hl7.mllp import Reply
        from openslots.connectors.hl7.parser import parse

        return [Reply(ack(parse(raw), "AA"), "AA") for raw in raws]

    def refuse(self, raw: bytes) -> Any:
        from openslots.connectors.hl7.ack import ack
        from openslots.connectors.hl7.mllp import Reply

        return Reply(ack(None, "AR"), "AR")


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
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        barrier.wait()
        for message in messages:
            sent = time.perf_counter()
            sock.sendall(START_BLOCK + message + END_BLOCK)
            ack = _read_ack(sock)
            latencies.append(time.perf_counter() - sent)
            msa = next(s for s in ack.split(b"\r") if s.startswith(b"MSA")).split(b"|")
            codes[msa[1].decode()] += 1
    return {"codes": dict(codes), "latencies": latencies}


def _send_all(
    port: int, chunks: list[list[bytes]], ready: Callable[[], None] | None = None
) -> dict[str, Any]:
    """One thread and connection per chunk, all sending at once (after `ready`, when given,
    returns); seconds from the start to the last ACK, the ACK codes and every latency."""
    barrier = threading.Barrier(len(chunks) + 1)
    results: list[dict[str, Any]] = [{} for _ in chunks]

    def run(index: int) -> None:
        results[index] = _sender(port, chunks[index], barrier)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    if ready is not None:
        ready()
    barrier.wait()
    with Timer() as timer:
        for t in threads:
            t.join()
    codes: dict[str, int] = defaultdict(int)
    latencies: list[float] = []
    for result in results:
        for code, n in result.get("codes", {}).items():
            codes[code] += n
        latencies += result.get("latencies", [])
    return {"seconds": timer.seconds, "codes": dict(codes), "latencies": latencies}


def _sender_process(port: int, chunks: list[list[bytes]], pipe: Connection) -> None:
    """The senders in a process of their own (an EHR is not in the listener's process): they
    connect, say so, wait for the word, send, and hand back what `_send_all` returns."""

    def ready() -> None:
        pipe.send("ready")
        pipe.recv()

    pipe.send(_send_all(port, chunks, ready))


def run_listener(
    handler: Any, messages: list[bytes], senders: int, *, separate: bool = True
) -> dict[str, Any]:
    """The listener in a thread with its own loop; `senders` threads, one connection each,
    sharing `messages` evenly, in another process (`separate`) or in this one (then senders
    and listener share one GIL, which no real sender does). Returns seconds, ACK codes and
    per-message latencies."""
    from openslots.connectors.hl7.mllp import MllpListener

    server = MllpListener(handler, "127.0.0.1", 0, on_batch=None)
    loop = asyncio.new_event_loop()
    task = loop.create_task(server.serve())

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=serve, name="bench-mllp-listener", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.ready.is_set():
        if time.monotonic() > deadline:
            raise RuntimeError("the MLLP listener did not start")
        time.sleep(0.02)
    per_sender = len(messages) // senders
    chunks = [messages[i * per_sender : (i + 1) * per_sender] for i in range(senders)]
    if separate:
        context = multiprocessing.get_context("spawn")  # the listener's threads run: no fork
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_sender_process, args=(server.port, chunks, theirs), name="bench-mllp-senders"
        )
        process.start()
        try:
            if ours.recv() != "ready":
                raise RuntimeError("the senders did not start")
            ours.send("go")
            result: dict[str, Any] = ours.recv()
        finally:
            process.join(timeout=30)
    else:
        result = _send_all(server.port, chunks)
    time.sleep(0.2)  # let the connection handlers see the senders' EOF before the loop stops
    loop.call_soon_threadsafe(task.cancel)
    thread.join(timeout=10)
    return result


def _percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


class MllpListenerScenario(Scenario):
    name = "mllp_listener"
    baseline_name = "same senders, listener ACKs without storing"
    target = f">= {TARGET_MLLP:,.0f} msg/s, all AA"

    def size_label(self) -> str:
        size = self.ctx.size
        return f"{size.mllp_senders} x {size.mllp_per_sender:,} messages"

    def setup(self) -> None:
        size = self.ctx.size
        count = size.mllp_senders * size.mllp_per_sender
        self.messages = messages_for(self.ctx)[:count]
        if len(self.messages) < count:  # more than the file-drop size: generate more
            self.messages = generate_messages(count, self.ctx.seed)
        self.latencies: list[float] = []
        self.baseline_latencies: list[float] = []
        self.groups: list[int] = []

    def baseline(self, index: int) -> float:
        result = run_listener(AckWithoutStoring(), self.messages, self.ctx.size.mllp_senders)
        self.baseline_latencies += result["latencies"]
        return float(result["seconds"])

    def measured(self, index: int) -> float:
        from openslots.resources import resources
        from openslots.tasks.hl7_receive import StoreThenAck

        postgres = self.ctx.use_postgres()
        postgres.fresh_schema()
        res = resources()
        groups = self.groups

        class CountedHandler(StoreThenAck):
            """The real handler, counting its group commits."""

            def handle(self, raws: list[bytes]) -> list[Any]:
                groups.append(len(raws))
                return super().handle(raws)

        handler = CountedHandler(
            res.engine, res.settings.hl7_assigning_authority, region=res.settings.phone_region
        )
        result = run_listener(handler, self.messages, self.ctx.size.mllp_senders)
        if result["codes"].get("AA", 0) != len(self.messages):
            log(f"WARNING: ACKs {result['codes']} for {len(self.messages)} messages")
        self.extra["acks"] = result["codes"]
        self.latencies += result["latencies"]
        return float(result["seconds"])

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        count = len(self.messages)
        rate = count / median_s
        self.extra |= {
            "messages": count,
            "msg_per_s": round(rate),
            "baseline_msg_per_s": round(count / baseline_s),
            "p50_ack_ms": _percentile_ms(self.latencies, 0.50),
            "p99_ack_ms": _percentile_ms(self.latencies, 0.99),
            "baseline_p50_ack_ms": _percentile_ms(self.baseline_latencies, 0.50),
            "baseline_p99_ack_ms": _percentile_ms(self.baseline_latencies, 0.99),
            "group_commits": len(self.groups),
            "mean_group": round(statistics.mean(self.groups), 1) if self.groups else 0,
        }
        all_aa = self.extra.get("acks", {}).get("AA", 0) == count
        return rate >= TARGET_MLLP and all_aa


SCENARIOS: list[type[Scenario]] = [Hl7FileIngest, MllpListenerScenario]
