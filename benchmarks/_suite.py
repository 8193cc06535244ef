"""The suite's machinery: sizes, the run context, the alternating runner, the table and JSON."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._postgres import BenchPostgres

ROOT = Path(__file__).resolve().parent.parent
PROVIDER, LOCATION = "Bench Provider", "Bench Location"


@dataclass(frozen=True)
class Size:
    """How big each scenario is at one `--size`."""

    name: str
    rounds: int
    roster_rows: int
    rss_rows: tuple[int, int]  # the small and the large file of the flat-memory check
    hl7_messages: int
    hl7apy_sample: int  # hl7apy is ~170 msg/s here: it parses a sample, scaled to all messages
    mllp_senders: int
    mllp_per_sender: int
    prefect_rows: int
    dispatch_messages: int
    dispatch_baseline: int  # the yagmail loop (~40 msg/s with latency) sends a scaled sample
    open_slot_connections: int
    open_slot_eligible: int


SIZES = {
    "smoke": Size(
        name="smoke",
        rounds=1,
        roster_rows=500,
        rss_rows=(250, 500),
        hl7_messages=100,
        hl7apy_sample=20,
        mllp_senders=8,
        mllp_per_sender=10,
        prefect_rows=500,
        dispatch_messages=40,
        dispatch_baseline=10,
        open_slot_connections=500,
        open_slot_eligible=100,
    ),
    "medium": Size(
        name="medium",
        rounds=3,
        roster_rows=100_000,
        rss_rows=(20_000, 100_000),
        hl7_messages=20_000,
        hl7apy_sample=2_000,
        mllp_senders=8,
        mllp_per_sender=500,
        prefect_rows=50_000,
        dispatch_messages=2_000,
        dispatch_baseline=500,
        open_slot_connections=50_000,
        open_slot_eligible=10_000,
    ),
    "full": Size(
        name="full",
        rounds=3,
        roster_rows=1_000_000,
        rss_rows=(100_000, 1_000_000),
        hl7_messages=100_000,
        hl7apy_sample=2_000,
        mllp_senders=8,
        mllp_per_sender=2_500,
        prefect_rows=100_000,
        dispatch_messages=10_000,
        dispatch_baseline=2_000,
        open_slot_connections=50_000,
        open_slot_eligible=10_000,
    ),
}


def log(message: str) -> None:
    print(f"[bench {dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """What every scenario is handed: sizes, seed, a scratch directory, the databases."""

    size: Size
    rounds: int
    seed: int
    home: Path
    postgres: BenchPostgres | None  # None: the server is down (PostgreSQL scenarios skip)
    postgres_down: str = ""
    _prefect_warm: bool = False
    notes: dict[str, Any] = field(default_factory=dict)  # reported with the machine
    cache: dict[Any, Any] = field(default_factory=dict)  # data shared by scenarios

    def use_postgres(self) -> BenchPostgres:
        from openslots.connectors.database.engine import dispose_engines

        assert self.postgres is not None
        dispose_engines()
        os.environ["OPENSLOTS_DATABASE_URL"] = self.postgres.sqlalchemy_url
        return self.postgres

    def use_sqlite(self, name: str) -> Path:
        """A fresh migrated SQLite file under the scratch directory."""
        from openslots.connectors.database import upgrade_database
        from openslots.connectors.database.engine import dispose_engines

        dispose_engines()
        path = self.home / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["OPENSLOTS_DATABASE_URL"] = f"sqlite:///{path}"
        upgrade_database()
        return path

    def warm_prefect(self) -> None:
        """Start Prefect's temporary server once (its ~20 s start-up is no scenario's cost)."""
        if self._prefect_warm:
            return
        from prefect import flow

        @flow(name="bench-warm-up", persist_result=False)
        def warm_up() -> int:
            return 1

        start = time.perf_counter()
        warm_up()
        self.notes["prefect_warmup_s"] = round(time.perf_counter() - start, 2)
        self._prefect_warm = True


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for one scenario, and put the old values back."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Scenario:
    """One row of the table. The runner calls `setup`, then per round `baseline(i)` and
    `measured(i)` alternately (each returns the seconds of one timed run, with untimed
    preparation inside it done before its clock starts), then `finish`."""

    name = ""
    needs_postgres = True
    uses_prefect = False
    baseline_name = ""
    target = ""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.extra: dict[str, Any] = {}
        self._saved_env: dict[str, str | None] = {}

    def set_env(self, values: dict[str, str]) -> None:
        """Set environment variables for this scenario; `restore_env` puts the old ones back."""
        for name in values:
            self._saved_env.setdefault(name, os.environ.get(name))
        os.environ.update(values)

    def restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def size_label(self) -> str:
        raise NotImplementedError

    def setup(self) -> None:
        """Untimed: data, schema, servers."""

    def baseline(self, index: int) -> float:
        raise NotImplementedError

    def measured(self, index: int) -> float:
        raise NotImplementedError

    def finish(self) -> None:
        """Untimed: extra measurements, teardown."""

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        """Whether the target holds (None: no target, the ratio is reported)."""
        return None


@dataclass
class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    seconds: float = 0.0
    _start: float = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def run_scenario(scenario: Scenario) -> dict[str, Any]:
    """Setup, the rounds (baseline and scenario alternately), finish; one JSON row."""
    ctx = scenario.ctx
    row: dict[str, Any] = {"name": scenario.name, "size": scenario.size_label()}
    if scenario.needs_postgres and ctx.postgres is None:
        log(f"{scenario.name}: SKIPPED, PostgreSQL is not reachable ({ctx.postgres_down})")
        return row | _empty(scenario, f"PostgreSQL not reachable: {ctx.postgres_down}")
    try:
        return row | _run(scenario)
    except Exception as exc:  # one broken scenario must not lose the others' figures
        log(f"{scenario.name}: FAILED\n{traceback.format_exc()}")
        return row | _empty(scenario, f"{type(exc).__name__}: {exc}", key="error")


def _run(scenario: Scenario) -> dict[str, Any]:
    ctx = scenario.ctx
    if scenario.uses_prefect:
        ctx.warm_prefect()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    log(f"{scenario.name} ({scenario.size_label()}): setup")
    scenario.setup()
    times: list[float] = []
    baselines: list[float] = []
    for index in range(ctx.rounds):
        baselines.append(scenario.baseline(index))
        times.append(scenario.measured(index))
        log(
            f"{scenario.name} round {index + 1}/{ctx.rounds}: {times[-1]:.3f} s, "
            f"baseline {baselines[-1]:.3f} s"
        )
    scenario.finish()
    median_s, baseline_s = statistics.median(times), statistics.median(baselines)
    ratio = median_s / baseline_s if baseline_s > 0 else float("inf")
    return {
        "median_s": round(median_s, 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "baseline": scenario.baseline_name,
        "baseline_median_s": round(baseline_s, 4),
        "ratio": round(ratio, 3),
        "target": scenario.target,
        "met": scenario.met(median_s, baseline_s),
        "rounds": len(times),
        "times_s": [round(t, 4) for t in times],
        "baseline_times_s": [round(t, 4) for t in baselines],
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "wall_s": round(time.perf_counter() - started, 1),
    } | scenario.extra


def _empty(scenario: Scenario, reason: str, key: str = "skipped") -> dict[str, Any]:
    return {
        "median_s": None,
        "min_s": None,
        "max_s": None,
        "baseline": scenario.baseline_name,
        "baseline_median_s": None,
        "ratio": None,
        "target": scenario.target,
        "met": None,
        key: reason,
    }


# --------------------------------------------------------------------------- machine, versions


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "code": code_version(),
        "shared_machine_note": "load averages include other jobs on this machine",
    }


def versions(postgres: BenchPostgres | None) -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("prefect", "sqlalchemy", "pandas", "pandera", "hl7apy", "pyarrow", "psycopg"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        found["postgresql"] = postgres.server_version() if postgres is not None else None
    except Exception:
        found["postgresql"] = None
    return found


def code_version() -> str:
    """The commit measured, "+dirty" when openslots/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "openslots"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- the table


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _mark(met: bool | None, row: dict[str, Any]) -> str:
    if row.get("error"):
        return "ERROR"
    if row.get("skipped"):
        return "SKIPPED"
    return {True: "MET", False: "MISSED", None: "-"}[met]


def table(rows: list[dict[str, Any]]) -> str:
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("scenario", lambda r: r["name"]),
        ("size", lambda r: r["size"]),
        ("median s", lambda r: _seconds(r["median_s"])),
        ("min s", lambda r: _seconds(r["min_s"])),
        ("max s", lambda r: _seconds(r["max_s"])),
        ("baseline", lambda r: r["baseline"]),
        ("baseline median s", lambda r: _seconds(r["baseline_median_s"])),
        ("ratio", lambda r: "-" if r["ratio"] is None else f"{r['ratio']:.3g}x"),
        ("target", lambda r: r["target"] or "-"),
        ("verdict", lambda r: _mark(r["met"], r)),
    ]
    cells = [[name for name, _ in columns]] + [[cell(r) for _, cell in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def details(rows: list[dict[str, Any]]) -> str:
    """The extra figures of each scenario (rates, RSS, rows written, latencies), one line each."""
    shown = (
        "rows",
        "messages",
        "msg_per_s",
        "baseline_msg_per_s",
        "rss_mb",
        "rss_mb_small",
        "rows_written",
        "changed_rows",
        "p50_ack_ms",
        "p99_ack_ms",
        "group_commits",
        "no_latency_msg_per_s",
        "overhead_pct",
        "baseline_messages",
        "skipped",
        "error",
    )
    lines = []
    for row in rows:
        parts = [f"{k}={row[k]}" for k in shown if row.get(k) is not None]
        if parts:
            lines.append(f"  {row['name']}: " + ", ".join(parts))
    return "\n".join(lines)
