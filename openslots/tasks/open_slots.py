"""The open-slot alerts step: `offer_due` for one slot (or all) as a Prefect task. Apart from
openslots/tasks/offers.py so that `slots open` and the API, which call `offer_due` directly,
do not import Prefect."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from openslots.domain import clock
from openslots.resources import resources
from openslots.tasks._safety import phi_safe, run_logger
from openslots.tasks.offers import offer_due


@task(name="offer-slots", cache_policy=NO_CACHE)
@phi_safe("offer-slots")
def offer_slots(slot_id: int | None = None) -> dict[str, object]:
    """Materialise the offers due for `slot_id` (every slot when None); counts only."""
    res = resources()
    engine = res.require_current_schema()
    counts = offer_due(engine, res.settings, clock.now(), None if slot_id is None else [slot_id])
    run_logger().info(
        "%d offers queued (%d messages), %d waiting for the morning, %d skipped",
        counts.offers_sent,
        counts.messages,
        counts.waiting,
        counts.skipped,
    )
    return asdict(counts)
