"""Offering slots: turn due offers into outbox messages at an allowed hour, and close slots whose
cutoff passed. Plain functions (no Prefect): the dispatch task, `slots open` / the API and the
HL7 ingest run all call `offer_due`, so an offer is materialised by whichever runs first after it
is due, and never twice (the outbox's unique key).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from openslots.connectors.database import offers as repo
from openslots.domain.offers import offer_decision
from openslots.settings import Settings


@dataclass
class OfferCounts:
    """What one pass did, in counts (no patient data)."""

    offers_sent: int = 0  # offers whose messages are now in the outbox
    messages: int = 0
    waiting: int = 0  # held by the quiet hours until the morning
    skipped: int = 0
    slots_closed: int = 0  # open slots whose lead-time cutoff passed unclaimed


def offer_due(
    engine: Engine,
    settings: Settings,
    now: dt.datetime,
    slot_ids: Sequence[int] | None = None,
) -> OfferCounts:
    """Close open slots within the lead time, then materialise every due group of offers (of
    `slot_ids`, or of every slot), each group in its own transaction."""
    counts = OfferCounts()
    lead = dt.timedelta(minutes=settings.alert_min_lead_minutes)
    with engine.begin() as conn:
        counts.slots_closed = len(repo.close_started(conn, now + lead, now))
        groups = repo.due_groups(conn, now, slot_ids)
    quiet = settings.resolved_alert_quiet_hours()
    for group in groups:
        decision = offer_decision(
            now,
            group.starts_at,
            quiet=quiet,
            timezone=group.timezone or settings.default_timezone,
            lead_minutes=settings.alert_min_lead_minutes,
        )
        with engine.begin() as conn:
            if decision.skip is not None:
                counts.skipped += repo.skip_group(
                    conn, group.slot_id, group.due_at, str(decision.skip)
                )
            elif decision.wait_until is not None:
                counts.waiting += repo.delay_pending(
                    conn, group.slot_id, decision.wait_until, decision.wait_until - now
                )
            else:
                # A Serial group due later: the cap may have been reached since the slot opened.
                counts.skipped += repo.skip_capped(
                    conn, group.slot_id, group.due_at, now, settings.alert_max_per_week
                )
                sent, written = repo.materialise_group(conn, group.slot_id, group.due_at, now)
                counts.offers_sent += sent
                counts.messages += written
    return counts
