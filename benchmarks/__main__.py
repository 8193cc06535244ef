"""`python -m benchmarks`: every scenario against its baseline in the same run, one table.

Each scenario generates its own seeded data, then runs its baseline and itself alternately
(--rounds times), and the table gives the median, min and max of the scenario, the baseline's
median, their ratio (scenario time / baseline time for the same work: below 1 the scenario is
faster), the target and MET/MISSED, with the machine (cores, load average before and after)
and the versions. A missed target is reported, not an error: the command exits 0 when it ran.

PostgreSQL: the database named by --postgres-url (or OPENSLOTS_BENCH_POSTGRES_URL; default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_openslots) is created when missing and then
dropped at the end; its schema `public` is dropped and recreated for every round, so never
point it at a database you keep (postgres, test and test_lead are refused). When the server
is down, the PostgreSQL scenarios are skipped with the reason and the SQLite ones still run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import _suite, dispatch, hl7_ingest, open_slot, roster_sync
from benchmarks._postgres import DEFAULT_URL, URL_VARIABLE, BenchPostgres

SCENARIOS: list[type[_suite.Scenario]] = [
    roster_sync.RosterFirstImport,
    roster_sync.RosterResync,
    roster_sync.RosterResync1pct,
    hl7_ingest.Hl7FileIngest,
    hl7_ingest.MllpListenerScenario,
    roster_sync.PrefectOverhead,
    dispatch.DispatchSmtp,
    open_slot.OpenSlotFanout,
    roster_sync.RosterFirstImportSqlite,
    roster_sync.RosterResyncSqlite,
    roster_sync.RosterResync1pctSqlite,
]
NAMES = [s.name for s in SCENARIOS]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1] + "\nScenarios: " + ", ".join(NAMES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these scenarios (repeat it, or NAME,NAME,...); default: all",
    )
    parser.add_argument(
        "--size",
        choices=list(_suite.SIZES),
        default="full",
        help="smoke: seconds, for CI (1 round); medium: 100k roster rows, 20k HL7 messages; "
        "full (default): the issue's sizes (1M roster rows, 100k HL7 messages, ...)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="baseline/scenario pairs per scenario (default: 1 for smoke, 3 otherwise)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"SQLAlchemy URL of the benchmark database (default: ${URL_VARIABLE}, "
        f"else {DEFAULT_URL})",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    args = parser.parse_args(argv)
    only = [name.strip() for value in args.only for name in value.split(",") if name.strip()]
    unknown = sorted(set(only) - set(NAMES))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    args.only = only
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = _suite.SIZES[args.size]
    load_before = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="openslots-bench-"))
    # Before openslots and Prefect are imported: both read the environment.
    os.environ["OPENSLOTS_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    # A fresh Prefect home migrates its database first: on a loaded machine that takes longer
    # than the temporary server's default start-up timeout (20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    postgres: BenchPostgres | None = BenchPostgres(args.postgres_url)
    assert postgres is not None
    down = postgres.reachable()
    if down:
        print(f"PostgreSQL at {postgres.url.render_as_string()} is down: its scenarios are "
              f"skipped ({down})", file=sys.stderr)  # fmt: skip
        postgres = None
    else:
        postgres.hold()
        postgres.ensure()
        postgres.end_sessions_left_behind()
    ctx = _suite.Context(
        size=size,
        rounds=args.rounds or size.rounds,
        seed=args.seed,
        home=home,
        postgres=postgres,
        postgres_down=down or "",
    )
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    rows: list[dict[str, Any]] = []
    versions = _suite.versions(postgres)
    try:
        for scenario in chosen:
            rows.append(_suite.run_scenario(scenario(ctx)))
            report = {
                "machine": _suite.machine(load_before) | ctx_notes(ctx),
                "versions": versions,
                "scenarios": rows,
            }
            if args.json is not None:  # after each scenario: a long run that stops keeps some
                args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    finally:
        if postgres is not None:
            postgres.drop_if_created()
            postgres.release()
    print(render(report, args))
    shutil.rmtree(home, ignore_errors=True)
    return 0


def ctx_notes(ctx: _suite.Context) -> dict[str, Any]:
    return {"rounds": ctx.rounds, "size": ctx.size.name} | ctx.notes


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    m, v = report["machine"], report["versions"]
    warmup = ""
    if "prefect_warmup_s" in m:
        warmup = f"; Prefect server start-up {m['prefect_warmup_s']} s (excluded)"
    lines = [
        _suite.table(report["scenarios"]),
        "",
        _suite.details(report["scenarios"]),
        "",
        f"machine: {m['cores']} cores, load average {m['load_avg_before']} before, "
        f"{m['load_avg_after']} after (shared machine: other jobs count); {m['platform']}; "
        f"code {m['code']}; size {m['size']}, {m['rounds']} round(s)" + warmup,
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "ratio = scenario time / baseline time for the same work (below 1: faster)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
