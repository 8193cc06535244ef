"""Benchmark: the roster sync flow against a plain PostgreSQL COPY of the same CSV file.

Run (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python benchmarks/roster_sync.py --rows 1000000
    .venv/bin/python benchmarks/roster_sync.py --rows 1000000 --json        # machine-readable
    .venv/bin/python benchmarks/roster_sync.py --rows 200000 --small-rows 0  # one size only

What it compares, per file size (each size in a fresh subprocess, so each has its own peak RSS):

* baseline: `COPY roster_copy FROM STDIN WITH (FORMAT csv, HEADER true)` of the same file into
  a plain table of 8 text columns (psycopg `cursor.copy`), i.e. the floor for "get the bytes
  into PostgreSQL";
* measured: `openslots.flows.roster_sync.roster_sync(path, provider, location, mode="sync")`
  end to end (start batch, read + validate + stage in chunks, apply set-wise, report), after a
  warm-up flow has started Prefect's temporary server (its ~20 s start-up is reported apart);
* stages: the same import again on a fresh schema, calling the task functions' `.fn`
  (start_import, stage_roster, apply_roster) directly with timers wrapped around the
  repository and validation functions, so the report says where the time goes;
* re-sync: the flow once more on the now populated database (the nightly case: same file,
  nothing changed).

The file is `openslots.synthetic.people(rows, seed)` written with `write_roster` (template
header, ~70 % with a "(415) 555-01xx" phone, ~10 % dependents with guardian names). A sample of
the phone column is checked against `normalise_phones`' fast path: values it cannot vouch for go
to `phonenumbers` at ~50 µs each, which would dominate validation.

Everything runs in the dedicated database `openslots_bench` (created if missing; its `public`
schema is dropped and recreated before each run). The database `test` is never touched.
Targets (from the issue): flow ≤ 5x COPY, peak RSS ≤ 1 GB and flat as the file grows. A miss
is reported, not an error: this is a measurement, it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _timers import Timers

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
BENCH_DB = "openslots_bench"
PROVIDER, LOCATION = "Bench Provider", "Bench Location"
TARGET_RATIO = 5.0
TARGET_PEAK_MB = 1024.0
FLAT_TOLERANCE = 1.25  # "flat": peak at the large size ≤ 1.25x the peak at the small size
COPY_BLOCK = 1 << 20
# Our sessions carry this name, so sessions of anyone else on openslots_bench can be told apart:
# another benchmark resetting the same schema mid-run would skew or break the figures.
APP_NAME = "openslots-bench-roster"
LOCK_KEY = 0x0B5E_0001  # advisory lock (taken on the `postgres` db): one roster benchmark at a time
QUIET_WAIT_S = 1800


def _conninfo(dbname: str) -> str:
    if dbname == "test":  # the test suite's database: never
        raise SystemExit("refusing to use the database 'test'")
    return (
        f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={dbname} application_name={APP_NAME}"
    )


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------- database


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def other_sessions() -> list[str]:
    """Sessions on openslots_bench that are not this benchmark's (application names)."""
    import psycopg

    with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT coalesce(nullif(application_name, ''), '?') FROM pg_stat_activity "
            "WHERE datname = %s AND application_name IS DISTINCT FROM %s",
            (BENCH_DB, APP_NAME),
        ).fetchall()
    return sorted(name for (name,) in rows)


def hold_bench_lock() -> Any:
    """Serialise runs of this benchmark (blocks), and wait until nobody else uses the database.

    Returns the connection holding the advisory lock: keep it open for the whole run."""
    import psycopg

    conn = psycopg.connect(_conninfo("postgres"), autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    deadline = time.monotonic() + QUIET_WAIT_S
    while others := other_sessions():
        if time.monotonic() > deadline:
            _log(f"WARNING: still sharing {BENCH_DB} with {others}; measuring anyway")
            break
        _log(f"waiting: other sessions on {BENCH_DB} ({others}) would skew the figures")
        time.sleep(15)
    return conn


def note_contention(result: dict[str, Any], phase: str) -> None:
    if others := other_sessions():
        result.setdefault("contended", []).append(f"{phase}: {', '.join(others)}")
        _log(f"WARNING: other sessions on {BENCH_DB} during {phase} ({others}): figures may be off")


def reset_schema() -> None:
    """Drop and recreate `public` in openslots_bench, and drop pooled connections to it."""
    import psycopg

    from openslots.connectors.database.engine import dispose_engines

    dispose_engines()
    with psycopg.connect(_conninfo(BENCH_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def copy_baseline(path: Path) -> tuple[float, int]:
    """COPY the file into a plain table of text columns; returns (seconds, rows)."""
    import psycopg

    with psycopg.connect(_conninfo(BENCH_DB)) as conn:
        conn.execute(
            "CREATE TABLE roster_copy (client_id text, first_name text, last_name text, "
            "date_of_birth text, email text, mobile_phone text, guardian_first_name text, "
            "guardian_last_name text)"
        )
        conn.commit()
        start = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY roster_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while block := handle.read(COPY_BLOCK):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - start
        rows = conn.execute("SELECT count(*) FROM roster_copy").fetchone()[0]
        conn.execute("DROP TABLE roster_copy")
        conn.commit()
    return seconds, rows


# --------------------------------------------------------------------------- data


def generate_csv(path: Path, rows: int, seed: int) -> float:
    from openslots import synthetic

    start = time.perf_counter()
    written = synthetic.write_roster(path, (p.row() for p in synthetic.people(rows, seed=seed)))
    assert written == rows
    return time.perf_counter() - start


def phone_check(path: Path, sample: int, region: str) -> dict[str, Any]:
    """How many phones of the first `sample` rows miss normalise_phones' vectorised path."""
    import pandas as pd

    from openslots.domain import phone

    column = pd.read_csv(
        path, usecols=["Mobile Phone"], dtype=str, keep_default_na=False, nrows=sample
    )["Mobile Phone"]
    slow_calls = 0
    original = phone.to_e164

    def counting(value: str, reg: str) -> str | None:
        nonlocal slow_calls
        slow_calls += 1
        return original(value, reg)

    phone.to_e164 = counting
    try:
        start = time.perf_counter()
        _e164, invalid = phone.normalise_phones(column, region)
        seconds = time.perf_counter() - start
    finally:
        phone.to_e164 = original
    present = int((column.str.strip() != "").sum())
    return {
        "sample_rows": len(column),
        "present": present,
        "distinct": int(column[column != ""].nunique()),
        "slow_path_calls": slow_calls,  # distinct values only: normalise_phones dedups
        "invalid": int(invalid.sum()),
        "seconds": round(seconds, 3),
    }


# --------------------------------------------------------------------------- stage timers


def _install_timers(timers: Timers) -> None:
    from openslots.connectors.database import roster as repo
    from openslots.schemas import roster as schema
    from openslots.tasks import roster as tasks

    timers.wrap_generator(tasks, "iter_chunks", "stage: read_csv chunks (iter_chunks)")
    timers.wrap(tasks, "validate_chunk", "stage: validate_chunk")
    timers.wrap(schema, "normalise_chunk", "stage:   normalise_chunk")
    timers.wrap(schema, "normalise_phones", "stage:     normalise_phones")
    timers.wrap(schema.RosterRow, "validate", "stage:   RosterRow.validate (pandera)")
    timers.wrap(repo, "stage_rows", "stage: stage_rows")
    timers.wrap(repo, "_copy_rows", "stage:   _copy_rows (to_csv + COPY)")
    for name in (
        "record_findings",
        "reject_in_file_duplicates",
        "provider_id_named",
        "ensure_target",
        "match_connections",
        "count_client_changes",
        "upsert_clients",
        "apply_mrn_updates",
        "queue_invitations",
        "clear_staging",
        "finish_batch",
    ):
        timers.wrap(repo, name, f"repo: {name}")


def run_stages(path: Path, profile: Path | None) -> dict[str, Any]:
    """start_import / stage_roster / apply_roster via `.fn`, each timed, inner calls timed."""
    from openslots.tasks.roster import apply_roster, stage_roster, start_import

    timers = Timers()
    _install_timers(timers)
    profiler = cProfile.Profile() if profile else None
    stages: dict[str, float] = {}
    try:
        with profiler or contextlib.nullcontext():
            start = time.perf_counter()
            begun = start_import.fn(str(path), PROVIDER, LOCATION, "sync", False, False)
            stages["start_import"] = time.perf_counter() - start
            start = time.perf_counter()
            staged = stage_roster.fn(begun.batch_id, str(path))
            stages["stage_roster"] = time.perf_counter() - start
            start = time.perf_counter()
            summary = apply_roster.fn(begun.batch_id, staged)
            stages["apply_roster"] = time.perf_counter() - start
    finally:
        timers.restore()
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    return {
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        # In wrapping order: file reading and validation, staging, then apply's statements.
        **timers.report(),
        "summary": summary.as_dict(),
        "profiled": profile is not None,
    }


# --------------------------------------------------------------------------- one size


def measure(rows: int, seed: int, phone_sample: int, resync: bool, profile: Path | None) -> dict:
    """Everything for one file size, in this (fresh) process."""
    result: dict[str, Any] = {"rows": rows, "seed": seed, "code": _code_version()}
    # Removed at exit, after Prefect's temporary server (registered later, so stopped first).
    home = Path(tempfile.mkdtemp(prefix="openslots-bench-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["OPENSLOTS_DATABASE_URL"] = (
        f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{BENCH_DB}?application_name={APP_NAME}"
    )
    os.environ["OPENSLOTS_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    # Imports after the environment is set: settings and Prefect read it.
    from prefect import flow

    from openslots.connectors.database import upgrade_database
    from openslots.flows.roster_sync import roster_sync

    path = home / "roster.csv"
    result["generate_s"] = round(generate_csv(path, rows, seed), 2)
    result["file_mb"] = round(path.stat().st_size / 2**20, 1)
    _log(f"[{rows}] generated {result['file_mb']} MB in {result['generate_s']} s")

    ensure_database()
    lock = hold_bench_lock()  # released when this process exits
    atexit.register(lock.close)
    reset_schema()
    copy_s, copied = copy_baseline(path)
    assert copied == rows, (copied, rows)
    result["copy_s"] = round(copy_s, 3)
    _log(f"[{rows}] COPY baseline {copy_s:.2f} s")
    note_contention(result, "COPY")

    reset_schema()
    upgrade_database()

    @flow(name="bench-warm-up", persist_result=False)
    def warm_up() -> int:
        return 1

    start = time.perf_counter()
    warm_up()
    result["prefect_warmup_s"] = round(time.perf_counter() - start, 2)
    result["peak_rss_mb_before_flow"] = round(_peak_mb(), 1)

    start = time.perf_counter()
    summary = roster_sync(str(path), PROVIDER, LOCATION, mode="sync")
    flow_s = time.perf_counter() - start
    result["flow_s"] = round(flow_s, 3)
    result["flow_summary"] = summary
    result["peak_rss_mb"] = round(_peak_mb(), 1)  # the flow's peak (ru_maxrss is monotonic)
    _log(f"[{rows}] flow {flow_s:.2f} s, peak RSS {result['peak_rss_mb']} MB")
    note_contention(result, "flow")
    if summary.get("accepted") != rows:
        _log(f"[{rows}] WARNING: accepted {summary.get('accepted')} of {rows} rows")

    if resync:
        start = time.perf_counter()
        again = roster_sync(str(path), PROVIDER, LOCATION, mode="sync")
        result["resync_flow_s"] = round(time.perf_counter() - start, 3)
        result["resync_summary"] = again
        _log(f"[{rows}] re-sync flow {result['resync_flow_s']:.2f} s")
        note_contention(result, "re-sync")

    reset_schema()
    upgrade_database()
    result["stages"] = run_stages(path, profile)
    result["peak_rss_mb_after_stages"] = round(_peak_mb(), 1)
    _log(f"[{rows}] stages {result['stages']['stages_s']}")
    note_contention(result, "stages")

    if phone_sample:
        from openslots.settings import get_settings

        result["phones"] = phone_check(path, phone_sample, get_settings().phone_region)
    reset_schema()
    return result


def _code_version() -> str:
    """The commit measured (the tree may carry uncommitted changes: marked "+dirty")."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "openslots"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def verdicts(results: list[dict]) -> dict[str, Any]:
    largest = max(results, key=lambda r: r["rows"])
    smallest = min(results, key=lambda r: r["rows"])
    out: dict[str, Any] = {
        "ratio": round(largest["flow_s"] / largest["copy_s"], 2),
        "ratio_ok": largest["flow_s"] / largest["copy_s"] <= TARGET_RATIO,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
    }
    out["peak_ok"] = out["peak_rss_mb"] <= TARGET_PEAK_MB
    if largest is not smallest:
        growth = largest["peak_rss_mb"] / smallest["peak_rss_mb"]
        out["peak_growth"] = round(growth, 2)
        out["flat_ok"] = growth <= FLAT_TOLERANCE
    return out


def print_report(results: list[dict], verdict: dict[str, Any]) -> None:
    header = (
        f"{'rows':>10} {'COPY s':>8} {'flow s':>8} {'flow/COPY':>9} "
        f"{'peak RSS MB':>11} {'rows/s':>9} {'re-sync s':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: r["rows"]):
        print(
            f"{r['rows']:>10,} {r['copy_s']:>8.2f} {r['flow_s']:>8.2f} "
            f"{r['flow_s'] / r['copy_s']:>8.1f}x {r['peak_rss_mb']:>11.0f} "
            f"{r['rows'] / r['flow_s']:>9,.0f} {r.get('resync_flow_s', float('nan')):>9.2f}"
        )
    largest = max(results, key=lambda r: r["rows"])
    print(
        f"\ncode {largest['code']}; Prefect temporary server warm-up, excluded: "
        f"{largest['prefect_warmup_s']} s"
    )
    stages = largest["stages"]
    note = " (under cProfile)" if stages["profiled"] else ""
    print(f"\nStages at {largest['rows']:,} rows via .fn{note}:")
    for name, seconds in stages["stages_s"].items():
        print(f"  {name:<44} {seconds:>8.2f} s")
    print("  inner calls (cumulative; indented = part of the line above):")
    for name, seconds in stages["inner_s"].items():
        print(f"    {name:<42} {seconds:>8.2f} s  x{stages['inner_calls'][name]}")
    if phones := largest.get("phones"):
        print(
            f"\nPhones, first {phones['sample_rows']:,} rows: {phones['present']:,} present, "
            f"{phones['distinct']:,} distinct, {phones['slow_path_calls']:,} sent to phonenumbers "
            f"(slow path), {phones['invalid']:,} invalid, normalise_phones {phones['seconds']} s"
        )

    for r in results:
        for warning in r.get("contended", []):
            print(f"\nWARNING ({r['rows']:,} rows): other sessions on {BENCH_DB} during {warning}")

    def mark(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    print("\nTargets:")
    print(f"  flow <= {TARGET_RATIO:.0f}x COPY: {verdict['ratio']}x  {mark(verdict['ratio_ok'])}")
    print(
        f"  peak RSS <= {TARGET_PEAK_MB:.0f} MB: {verdict['peak_rss_mb']:.0f} MB  "
        f"{mark(verdict['peak_ok'])}"
    )
    if "flat_ok" in verdict:
        print(
            f"  peak flat as the file grows (<= {FLAT_TOLERANCE}x): "
            f"{verdict['peak_growth']}x  {mark(verdict['flat_ok'])}"
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large file")
    parser.add_argument(
        "--small-rows",
        type=int,
        default=None,
        help="rows of the small file for the flat-memory check (default rows/4; 0: skip)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--no-resync", action="store_true", help="skip the re-sync flow run")
    parser.add_argument(
        "--phone-sample", type=int, default=200_000, help="rows checked for the phone slow path"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write cProfile stats of the .fn stage run (largest size) to this file",
    )
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:  # one size, this process: write the result where asked
        result = measure(args.rows, args.seed, args.phone_sample, not args.no_resync, args.profile)
        args.child.write_text(json.dumps(result))
        return 0

    small = args.rows // 4 if args.small_rows is None else args.small_rows
    sizes = sorted({n for n in (small, args.rows) if n > 0})
    results = []
    with tempfile.TemporaryDirectory(prefix="openslots-bench-results-") as tmp:
        for rows in sizes:
            out = Path(tmp) / f"{rows}.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(out),
                "--rows",
                str(rows),
                "--seed",
                str(args.seed),
                "--phone-sample",
                str(args.phone_sample if rows == args.rows else 0),
            ]
            if args.no_resync:
                command.append("--no-resync")
            if args.profile is not None and rows == args.rows:
                command += ["--profile", str(args.profile.resolve())]
            # The child's output (Prefect logs, progress) goes to stderr; stdout stays clean.
            code = subprocess.run(command, stdout=sys.stderr, check=False).returncode
            if code != 0 or not out.exists():
                _log(f"run with {rows} rows failed (exit {code})")
                return code or 1
            results.append(json.loads(out.read_text()))

    verdict = verdicts(results)
    if args.json:
        print(json.dumps({"results": results, "targets": verdict}, indent=2, default=str))
    else:
        print_report(results, verdict)
    if args.profile is not None:
        stats = pstats.Stats(str(args.profile), stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(r"openslots|pandas|pandera|sqlalchemy", 40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
