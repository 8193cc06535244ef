"""Open-slot scenario (issue 10): opening a slot for 10,000 eligible connections among 50,000,
against one plain INSERT ... SELECT of the same 10,000 ids, on PostgreSQL.

* setup: synthetic connections of one provider written with Core executemany: `eligible` of
  them Approved at the slot's location, half of those with a mobile phone; the others Pending,
  Paused or Declined there, or Approved at another location (not eligible);
* measured, called directly (no CLI, no flow run): what opening a slot runs, in one
  transaction: `slots.offer_slot` (windows, the contact cap, then one INSERT ... SELECT of the
  offers) and `offers.materialise_group` (one INSERT ... SELECT per channel), for a fresh
  Blast slot per round. The contact cap is on but out of reach (1,000 a week), so every round
  offers the same connections; quiet hours are off;
* baseline, same run, same connection pool: one `INSERT INTO bench_copy SELECT ...` of the
  same eligible ids (a plain filter on status and location) into an unindexed table.

Target: <= 3x.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from benchmarks._suite import LOCATION, PROVIDER, Context, Scenario, Timer, log

OTHER_LOCATION = "Elsewhere"
TARGET_RATIO = 3.0


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


class OpenSlotFanout(Scenario):
    name = "open_slot_fanout"
    baseline_name = "INSERT ... SELECT of the eligible ids"
    target = f"<= {TARGET_RATIO:g}x"

    def __init__(self, ctx: Context):
        super().__init__(ctx)
        self._pending: dict[str, Any] = {}

    def size_label(self) -> str:
        size = self.ctx.size
        return f"{size.open_slot_eligible:,} of {size.open_slot_connections:,} connections"

    def setup(self) -> None:
        self.set_env({"OPENSLOTS_ALERT_QUIET_HOURS": "off", "OPENSLOTS_ALERT_MAX_PER_WEEK": "1000"})
        postgres = self.ctx.use_postgres()
        postgres.fresh_schema()
        size = self.ctx.size
        with Timer() as timer:
            self.provider_id, self.location_id = populate(
                size.open_slot_connections, size.open_slot_eligible
            )
        log(f"{size.open_slot_connections:,} connections written in {timer.seconds:.1f} s")

    def baseline(self, index: int) -> float:
        # offer_round times both, the step first; the baseline's figure is kept for its turn.
        self._pending = offer_round(self.provider_id, self.location_id, index)
        return float(self._pending["baseline_ms"]) / 1000

    def measured(self, index: int) -> float:
        result = self._pending
        self.extra |= {
            "offers": result["offers"],
            "messages": result["messages"],
            "eligible": result["eligible"],
            "baseline_rows": result["baseline_rows"],
        }
        return float(result["step_ms"]) / 1000

    def finish(self) -> None:
        self.restore_env()

    def met(self, median_s: float, baseline_s: float) -> bool | None:
        return median_s / baseline_s <= TARGET_RATIO


SCENARIOS: list[type[Scenario]] = [OpenSlotFanout]
