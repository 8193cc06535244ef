"""Roster scenarios: the first import, the nightly re-sync (unchanged, and with 1 % of rows
changed) on PostgreSQL and SQLite, and what Prefect adds to a 100k-row sync.

* `roster_first_import`: the flow `roster_sync(path, provider, location, mode="sync")` on a
  fresh migrated schema, against `COPY roster_copy FROM STDIN (FORMAT csv, HEADER)` of the same
  file into a plain table of 8 text columns (psycopg `cursor.copy`, 1 MiB blocks). Peak RSS of
  the same import run through the task functions in a child process, at two file sizes.
* `roster_resync`: the flow again on the database holding that import (same file, nothing
  changed), against the same COPY; rows written to the data tables counted by xmin.
* `roster_resync_1pct`: every 100th row's email changed; the rounds alternate between the
  changed and the original file, so each round changes exactly those rows back or forth.
* `_sqlite` variants: the same flows on a SQLite file, against `sqlite3` `executemany` of the
  rows read with `csv.reader` into a plain table of another SQLite file (no target: the ratio).
* `prefect_overhead`: the flow against its task functions called directly (`.fn`, the same
  four in the same order), each on a fresh schema.

The file: `openslots.synthetic.people(rows, seed)` written with `write_roster` (template header,
~70 % with a phone, ~10 % dependents).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

from benchmarks._suite import LOCATION, PROVIDER, ROOT, Context, Scenario, Timer, log

COPY_BLOCK = 1 << 20
TARGET_FIRST = 20.0
TARGET_RESYNC = 3.0
TARGET_RESYNC_1PCT = 4.0
TARGET_PEAK_MB = 1024.0
FLAT_TOLERANCE = 1.25  # "flat": peak at the large size <= 1.25x the peak at the small size
TARGET_PREFECT = 1.05
CHANGE_EVERY = 100  # 1 % of the rows
PLAIN_COLUMNS = (
    "client_id text, first_name text, last_name text, date_of_birth text, email text, "
    "mobile_phone text, guardian_first_name text, guardian_last_name text"
)


# --------------------------------------------------------------------------- files


def roster_file(ctx: Context, rows: int, changed: bool = False) -> Path:
    """The seeded roster of `rows` rows (written once per run); `changed`: every 100th row's
    email is another."""
    from openslots import synthetic

    path = ctx.home / f"roster-{rows}{'-1pct' if changed else ''}.csv"
    if not path.exists():
        people = synthetic.people(rows, seed=ctx.seed)
        data = (_changed(n, p.row()) if changed else p.row() for n, p in enumerate(people, start=1))
        with Timer() as timer:
            synthetic.write_roster(path, data)
        log(f"wrote {path.name} ({path.stat().st_size / 2**20:.1f} MB) in {timer.seconds:.1f} s")
    return path


def _changed(n: int, row: list[str]) -> list[str]:
    if n % CHANGE_EVERY == 0:
        row[4] = "changed." + row[4]
    return row


def changed_rows(rows: int) -> int:
    return rows // CHANGE_EVERY


# --------------------------------------------------------------------------- baselines


def copy_plain(ctx: Context, path: Path) -> float:
    """COPY the file into a plain table of text columns (created and dropped untimed)."""
    import psycopg

    assert ctx.postgres is not None
    with psycopg.connect(ctx.postgres.conninfo()) as conn:
        conn.execute("DROP TABLE IF EXISTS roster_copy")
        conn.execute(f"CREATE TABLE roster_copy ({PLAIN_COLUMNS})")
        conn.commit()
        with Timer() as timer:
            with (
                conn.cursor() as cursor,
                cursor.copy("COPY roster_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
                path.open("rb") as handle,
            ):
                while block := handle.read(COPY_BLOCK):
                    copy.write(block)
            conn.commit()
        conn.execute("DROP TABLE roster_copy")
        conn.commit()
    return timer.seconds


def sqlite_plain(ctx: Context, path: Path) -> float:
    """`csv.reader` rows into `executemany` on a plain table of a fresh SQLite file."""
    target = ctx.home / "baseline.db"
    target.unlink(missing_ok=True)
    conn = sqlite3.connect(target)
    try:
        conn.execute(f"CREATE TABLE roster_copy ({PLAIN_COLUMNS})")
        conn.commit()
        with Timer() as timer, path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            conn.executemany("INSERT INTO roster_copy VALUES (?, ?, ?, ?, ?, ?, ?, ?)", reader)
            conn.commit()
    finally:
        conn.close()
    target.unlink(missing_ok=True)
    return timer.seconds


# --------------------------------------------------------------------------- the import


def flow_import(path: Path) -> dict[str, object]:
    from openslots.flows.roster_sync import roster_sync

    return roster_sync(str(path), PROVIDER, LOCATION, mode="sync")


def task_functions_import(path: Path, publish: bool = False) -> dict[str, object]:
    """The flow's task functions called directly in the flow's order; `publish`: also its
    report artifact (a call to the Prefect API), as the flow does."""
    from openslots.tasks.publish import publish_roster_report
    from openslots.tasks.roster import apply_roster, stage_roster, start_import

    begun = start_import.fn(str(path), PROVIDER, LOCATION, "sync", False, False)
    staged = stage_roster.fn(begun.batch_id, str(path))
    summary = apply_roster.fn(begun.batch_id, staged)
    if publish:
        with warnings.catch_warnings():  # "artifact creation outside of a flow run"
            warnings.simplefilter("ignore", FutureWarning)
            publish_roster_report.fn(summary.as_dict(), staged.rejected, PROVIDER, LOCATION)
    return summary.as_dict()


def _check(summary: dict[str, object], rows: int) -> None:
    if summary.get("accepted") != rows:
        log(f"WARNING: accepted {summary.get('accepted')} of {rows} rows: {summary}")


class RosterScenario(Scenario):
    """Shared by the six roster rows: one file size, one database kind."""

    sqlite = False
    uses_prefect = True

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self.needs_postgres = not self.sqlite
        self.rows = ctx.size.roster_rows
        self.baseline_name = (
            "sqlite3 executemany, plain table" if self.sqlite else "COPY into a plain table"
        )
        self.written: list[int] = []
        self.written_by_table: dict[str, int] = {}

    def size_label(self) -> str:
        return f"{self.rows:,} rows"

    def file(self, index: int) -> Path:
        return roster_file(self.ctx, self.rows)

    def use_database(self, fresh: bool) -> None:
        if self.sqlite:
            if fresh:
                self.ctx.use_sqlite(self.name)
        else:
            self.ctx.use_postgres()
            if fresh:
                assert self.ctx.postgres is not None
                self.ctx.postgres.fresh_schema()

    def baseline(self, index: int) -> float:
        path = self.file(index)
        return sqlite_plain(self.ctx, path) if self.sqlite else copy_plain(self.ctx, path)

    def timed_flow(self, path: Path) -> float:
        """The flow on the current database; rows written counted on PostgreSQL."""
        postgres = None if self.sqlite else self.ctx.postgres
        xid = postgres.xid() if postgres is not None else 0
        with Timer() as timer:
            summary = flow_import(path)
        _check(summary, self.rows)
        if postgres is not None:
            by_table = postgres.rows_written_since(xid)
            self.written.append(sum(by_table.values()))
            self.written_by_table = by_table
            self.extra["rows_written"] = max(self.written)
            self.extra["rows_written_rounds"] = self.written
            self.extra["rows_written_by_table"] = by_table
        self.extra["rows"] = self.rows
        return timer.seconds


class RosterFirstImport(RosterScenario):
    name = "roster_first_import"
    target = f"<= {TARGET_FIRST:g}x; peak RSS <= 1 GB, flat"

    def measured(self, index: int) -> float:
        self.use_database(fresh=True)
        return self.timed_flow(self.file(index))

    def finish(self) -> None:
        if self.sqlite:
            return
        small, large = self.ctx.size.rss_rows
        self.extra["rss_mb_small"], self.extra["rss_mb"] = peak_rss_mb(self.ctx, small, large)
        self.extra["rss_rows"] = [small, large]

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        if self.sqlite:
            return None
        rss, small = self.extra["rss_mb"], self.extra["rss_mb_small"]
        return bool(
            median_s / baseline_s <= TARGET_FIRST
            and rss <= TARGET_PEAK_MB
            and rss <= small * FLAT_TOLERANCE
        )


class RosterResync(RosterScenario):
    name = "roster_resync"
    target = f"<= {TARGET_RESYNC:g}x, 0 rows written"

    def setup(self) -> None:
        self.use_database(fresh=True)
        _check(task_functions_import(self.file(0)), self.rows)

    def measured(self, index: int) -> float:
        self.use_database(fresh=False)
        return self.timed_flow(self.file(index))

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        if self.sqlite:
            return None
        return median_s / baseline_s <= TARGET_RESYNC and max(self.written) == 0


class RosterResync1pct(RosterResync):
    name = "roster_resync_1pct"
    target = f"<= {TARGET_RESYNC_1PCT:g}x, only the changed rows written"

    def file(self, index: int) -> Path:
        """Round 0, 2, ... apply the changed file, 1, 3, ... the original again: each round
        changes exactly the same rows."""
        return roster_file(self.ctx, self.rows, changed=index % 2 == 0)

    def setup(self) -> None:
        self.use_database(fresh=True)
        _check(task_functions_import(roster_file(self.ctx, self.rows)), self.rows)
        self.extra["changed_rows"] = changed_rows(self.rows)

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        if self.sqlite:
            return None
        expected = changed_rows(self.rows)
        return median_s / baseline_s <= TARGET_RESYNC_1PCT and all(
            w == expected for w in self.written
        )


class RosterFirstImportSqlite(RosterFirstImport):
    name = "roster_first_import_sqlite"
    sqlite = True
    target = "report the ratio"


class RosterResyncSqlite(RosterResync):
    name = "roster_resync_sqlite"
    sqlite = True
    target = "report the ratio"


class RosterResync1pctSqlite(RosterResync1pct):
    name = "roster_resync_1pct_sqlite"
    sqlite = True
    target = "report the ratio"


class PrefectOverhead(Scenario):
    name = "prefect_overhead"
    uses_prefect = True
    baseline_name = "the same task functions via .fn"
    target = f"<= {TARGET_PREFECT:g}x (<= 5 % overhead)"

    def size_label(self) -> str:
        return f"{self.ctx.size.prefect_rows:,} rows"

    def _fresh(self) -> Path:
        postgres = self.ctx.use_postgres()
        postgres.fresh_schema()
        return roster_file(self.ctx, self.ctx.size.prefect_rows)

    def baseline(self, index: int) -> float:
        path = self._fresh()
        with Timer() as timer:
            summary = task_functions_import(path, publish=True)
        _check(summary, self.ctx.size.prefect_rows)
        return timer.seconds

    def measured(self, index: int) -> float:
        path = self._fresh()
        with Timer() as timer:
            summary = flow_import(path)
        _check(summary, self.ctx.size.prefect_rows)
        return timer.seconds

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        self.extra["overhead_pct"] = round((median_s / baseline_s - 1) * 100, 1)
        self.extra["rows"] = self.ctx.size.prefect_rows
        return median_s / baseline_s <= TARGET_PREFECT


# --------------------------------------------------------------------------- peak RSS


def peak_rss_mb(ctx: Context, small: int, large: int) -> tuple[float, float]:
    """Peak RSS (MB) of one child process after importing `small` rows, then after importing
    `large` rows, each through the task functions on a fresh schema (ru_maxrss: the child's
    own peak, imports included; it only grows, so the second figure is the peak of either
    import; no Prefect server, so no report artifact)."""
    assert ctx.postgres is not None
    paths = [roster_file(ctx, small), roster_file(ctx, large)]
    env = os.environ | {"OPENSLOTS_DATABASE_URL": ctx.postgres.sqlalchemy_url}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.roster_sync", ctx.postgres.sqlalchemy_url]
        + [f"{path}={rows}" for path, rows in zip(paths, (small, large), strict=True)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the RSS child failed: {done.stderr[-2000:]}")
    peaks: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"peak RSS at {small:,} rows: {peaks[0]} MB, then at {large:,} rows: {peaks[1]} MB")
    return peaks[0], peaks[1]


def _rss_child(url: str, files: list[str]) -> None:
    """`python -m benchmarks.roster_sync URL FILE=ROWS ...`: import each on a fresh schema,
    print the peak RSS after each (a JSON list of MB)."""
    from benchmarks._postgres import BenchPostgres

    postgres = BenchPostgres(url)
    peaks = []
    for item in files:
        path, _, rows = item.rpartition("=")
        postgres.fresh_schema()
        _check(task_functions_import(Path(path)), int(rows))
        peaks.append(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))  # KiB
    print(json.dumps(peaks))


SCENARIOS: list[type[Scenario]] = [
    RosterFirstImport,
    RosterResync,
    RosterResync1pct,
    RosterFirstImportSqlite,
    RosterResyncSqlite,
    RosterResync1pctSqlite,
    PrefectOverhead,
]

if __name__ == "__main__":  # the RSS child
    _rss_child(sys.argv[1], sys.argv[2:])
