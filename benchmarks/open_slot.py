"""Benchmark: opening a slot for 10,000 eligible connections among 50,000, against one plain
INSERT ... SELECT of 10,000 rows, on PostgreSQL.

Run (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

    .venv/bin/python benchmarks/open_slot.py              # 50,000 connections, 10,000 eligible
    .venv/bin/python benchmarks/open_slot.py --rounds 5 --json out.json

What it measures (issue 10, "Speed"):

* setup: `--connections` synthetic connections of one provider, written with Core executemany:
  `--eligible` Approved at the slot's location, half of them with a mobile phone; the others
  Pending, Paused or Declined there, or Approved at another location (not eligible);
* measured, called directly (no CLI, no flow run): the set-based step that turns eligibility
  into offers and their outbox messages, i.e. `offers.create_offers` (one INSERT ... SELECT
  from the eligibility query) and `offers.materialise_group` (one INSERT ... SELECT per
  channel) in one transaction, for a fresh Blast slot per round;
* baseline, same run, same connection: one `INSERT INTO bench_copy SELECT ...` of the same
  10,000 eligible ids (a plain filter on status and location) into an unindexed table;
* the ratio (median of `--rounds`); target <= 3x;
* `openslots slots open ... --json` end to end from a fresh process (its offers and messages
  queued before it returns), beside a fresh process that runs one trivial Prefect flow (the
  temporary server included): target <= 1 s more than that. Quiet hours are off for both so
  the offers go out whatever the time of day.

A miss is reported (MISSED), not an error: the script exits 0 when it ran. Everything runs in
the database `openslots_bench_open_slot` (created if missing, `public` dropped and recreated);
the database `test` is never touched.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _postgres
from _postgres import PG_HOST, PG_PORT, PG_USER

ROOT = Path(__file__).resolve().parent.parent

BENCH_DB = "openslots_bench_open_slot"
APP_NAME = "openslots-bench-open-slot"
PROVIDER, LOCATION, OTHER_LOCATION = "Bench Provider", "Bench Location", "Elsewhere"
TARGET_RATIO = 3.0
TARGET_CLI_EXTRA_S = 1.0
TRIVIAL_FLOW = "from prefect import flow\nflow(lambda: None)()\n"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def populate(total: int, eligible: int) -> tuple[int, int]:
    """`total` connections of one provider, `eligible` of them alertable at the slot's
    location. Returns (provider id, location id)."""
    from sqlalchemy import insert

    from openslots.connectors.database.models import Connection as ConnectionRow
    from openslots.connectors.database.roster import ensure_target
    from openslots.domain.statuses import ConnectionStatus
    from openslots.resources import resources

    engine = resources().require_current_schema()
    with engine.begin() as conn:
        target = ensure_target(conn, PROVIDER, LOCATION, integrated=False, create=True)
        other = ensure_target(conn, PROVIDER, OTHER_LOCATION, integrated=False, create=True)
    not_eligible = [
        (ConnectionStatus.PENDING, target.location_id),
        (ConnectionStatus.PAUSED, target.location_id),
        (ConnectionStatus.DECLINED, target.location_id),
        (ConnectionStatus.APPROVED, other.location_id),
    ]
    rows = []
    for n in range(total):
        if n < eligible:
            status, location_id = ConnectionStatus.APPROVED, target.location_id
        else:
            status, location_id = not_eligible[n % len(not_eligible)]
        rows.append(
            {
                "provider_id": target.provider_id,
                "location_id": location_id,
                "first_name": f"Bench{n}",
                "last_name": "Example",
                "date_of_birth": dt.date(1970, 1, 1) + dt.timedelta(days=n % 15000),
                "email": f"bench{n}@example.org",
                "mobile_phone": f"+1415{n:07d}" if n % 2 == 0 else None,
                "status": status,
            }
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(insert(ConnectionRow), rows[start : start + 10_000])
        conn.exec_driver_sql("ANALYZE")
    return target.provider_id, target.location_id


def offer_round(provider_id: int, location_id: int, index: int) -> dict[str, Any]:
    """One fresh Blast slot: offers and their outbox messages, timed; then the baseline."""
    from openslots.connectors.database import offers as offer_repo
    from openslots.connectors.database import slots as slot_repo
    from openslots.domain.statuses import ConnectionStatus
    from openslots.resources import resources

    engine = resources().require_current_schema()
    now = dt.datetime.now(dt.UTC)
    starts_at = now + dt.timedelta(days=1, minutes=index)
    with engine.begin() as conn:
        slot_id = slot_repo.insert_slot(
            conn,
            slot_repo.NewSlot(
                slot_key=f"bench|{index}",
                provider_id=provider_id,
                location_id=location_id,
                filler_id="",
                start=starts_at.isoformat(),
                starts_at=starts_at,
                duration_minutes=30,
            ),
            too_late=False,
            message_id=None,
            now=now,
        )
    began = time.perf_counter()
    with engine.begin() as conn:
        # What opening a slot runs (its facts: windows, the contact cap, then one insert).
        # The cap is on but out of reach: every round offers the same 10,000 connections.
        eligible = slot_repo.offer_slot(
            conn, slot_id, now, max_per_week=1_000, default_timezone="America/New_York"
        )
        offered = time.perf_counter()
        offers_sent, messages = offer_repo.materialise_group(conn, slot_id, now, now)
        materialised = time.perf_counter()
    committed = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_copy")
        conn.exec_driver_sql(
            "CREATE TABLE bench_copy (connection_id integer, slot_id integer, "
            "created_at timestamptz)"
        )
    start = time.perf_counter()
    with engine.begin() as conn:
        copied = conn.exec_driver_sql(
            "INSERT INTO bench_copy SELECT id, %(slot)s, now() FROM connections "
            "WHERE status = %(status)s AND location_id = %(location)s",
            {
                "slot": slot_id,
                "status": ConnectionStatus.APPROVED.value,
                "location": location_id,
            },
        ).rowcount
    baseline_s = time.perf_counter() - start
    return {
        "eligible": eligible,
        "offers": offers_sent,
        "messages": messages,
        "baseline_rows": copied,
        "step_ms": round((committed - began) * 1000, 1),
        "offers_ms": round((offered - began) * 1000, 1),  # create_offers
        "messages_ms": round((materialised - offered) * 1000, 1),  # materialise_group
        "commit_ms": round((committed - materialised) * 1000, 1),
        "baseline_ms": round(baseline_s * 1000, 1),
    }


def timed_process(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        _log(f"{command[:4]} exited {done.returncode}: {done.stderr[-500:]}")
    return seconds, done.stdout


def cli_round(index: int) -> dict[str, Any]:
    """`openslots slots open` in a fresh process, beside a fresh process's trivial flow run."""
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2, minutes=index)).isoformat()
    cli_s, out = timed_process(
        [sys.executable, "-m", "openslots.cli", "slots", "open", "--provider", PROVIDER,
         "--location", LOCATION, "--start", start, "--minutes", "30", "--json"]
    )  # fmt: skip
    flow_s, _ = timed_process([sys.executable, "-c", TRIVIAL_FLOW])
    opened = json.loads(out) if out.strip() else {}
    return {
        "slots_open_s": round(cli_s, 2),
        "trivial_flow_s": round(flow_s, 2),
        "alerts_queued": opened.get("alerts_queued"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--eligible", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cli-rounds", type=int, default=2, help="at least 1")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="openslots-bench-open-slot-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ.update(
        {
            "OPENSLOTS_DATABASE_URL": f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/"
            f"{BENCH_DB}?application_name={APP_NAME}",
            "OPENSLOTS_HOME": str(home),
            "OPENSLOTS_SECRET_KEY": "bench-secret-key-not-for-production",
            "OPENSLOTS_ALERT_QUIET_HOURS": "off",
            # The rounds offer the same connections again and again: keep the contact cap on
            # but out of reach, or the later rounds and the CLI run would offer to no one.
            "OPENSLOTS_ALERT_MAX_PER_WEEK": "1000",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_HOME": str(home / "prefect"),
        }
    )
    _postgres.ensure_database(BENCH_DB, APP_NAME)
    _postgres.fresh_schema(BENCH_DB, APP_NAME)
    start = time.perf_counter()
    provider_id, location_id = populate(args.connections, args.eligible)
    _log(f"{args.connections} connections written in {time.perf_counter() - start:.1f} s")
    rounds = [offer_round(provider_id, location_id, i) for i in range(args.rounds)]
    step = statistics.median(r["step_ms"] for r in rounds)
    baseline = statistics.median(r["baseline_ms"] for r in rounds)
    ratio = step / baseline if baseline else float("inf")
    cli = [cli_round(i) for i in range(max(1, args.cli_rounds))]
    cli_s = statistics.median(r["slots_open_s"] for r in cli)
    flow_s = statistics.median(r["trivial_flow_s"] for r in cli)
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "connections": args.connections,
        "eligible": args.eligible,
        "rounds": rounds,
        "step_ms": step,
        "baseline_ms": baseline,
        "ratio": round(ratio, 2),
        "cli": cli,
        "slots_open_s": cli_s,
        "trivial_flow_s": flow_s,
        "cli_extra_s": round(cli_s - flow_s, 2),
    }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    _log(
        f"offers + messages for {rounds[0]['eligible']} eligible: {step:.1f} ms vs "
        f"INSERT ... SELECT of {rounds[0]['baseline_rows']} rows {baseline:.1f} ms "
        f"= {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})"
    )
    extra = cli_s - flow_s
    verdict = "met" if extra <= TARGET_CLI_EXTRA_S else "MISSED"
    _log(
        f"slots open from the CLI {cli_s:.2f} s vs a trivial flow run {flow_s:.2f} s: "
        f"{extra:+.2f} s (target <= +{TARGET_CLI_EXTRA_S} s: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
