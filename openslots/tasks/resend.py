"""The automatic resend cadence as tasks: resolve the run (as-of day, providers and their
cadences), queue the steps that came due in id-ordered chunks, publish a report of counts.

Queueing a step records the invitation's next attempt (an intent): the next dispatch turns it
into `resend:{invitation_id}:{step_days}:{channel}` messages. Nothing here sends or holds
patient data; results are dates, provider names and counts.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from openslots.connectors.database import providers
from openslots.connectors.database import resends as repo
from openslots.connectors.database.models import ResendStepState
from openslots.domain import clock
from openslots.domain.cadence import CadenceError, SkipReason, parse_cadence, plan_resend, sent_on
from openslots.errors import ConfigurationError, OpenslotsError
from openslots.resources import resources
from openslots.tasks._safety import phi_safe, run_logger


class InvalidAsOf(OpenslotsError):
    """--as-of is not a YYYY-MM-DD date."""


@dataclass(frozen=True)
class ProviderPlan:
    """One provider of a run and the cadence that applies to it."""

    provider_id: int
    name: str
    cadence: tuple[int, ...]
    own_cadence: bool


@dataclass(frozen=True)
class ResendRun:
    """What a run covers: the as-of day, the providers, whether it writes."""

    as_of: dt.date
    providers: tuple[ProviderPlan, ...]
    default_timezone: str  # of locations without their own: whose day a first send was
    dry_run: bool = False


@dataclass
class StepCounts:
    """Counts of one provider (or the whole run): PHI-free."""

    due: int = 0
    queued: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, other: StepCounts) -> None:
        self.due += other.due
        self.queued += other.queued
        self.skipped.update(other.skipped)

    def as_dict(self) -> dict[str, object]:
        return {
            "due": self.due,
            "queued": self.queued,
            "skipped": dict(sorted(self.skipped.items())),
        }


def parse_as_of(as_of: str | None, default_timezone: str) -> dt.date:
    """The run's day: YYYY-MM-DD, or today at the installation (OPENSLOTS_DEFAULT_TIMEZONE)."""
    if as_of is None:
        return clock.now().astimezone(ZoneInfo(default_timezone)).date()
    try:
        return dt.date.fromisoformat(as_of)
    except ValueError:
        raise InvalidAsOf("--as-of: expected a date YYYY-MM-DD") from None


@task(name="start-resend-run", cache_policy=NO_CACHE)
@phi_safe("start-resend-run")
def start_resend_run(
    as_of: str | None = None, provider: str | None = None, dry_run: bool = False
) -> ResendRun:
    """Resolve the as-of day and the providers (all, or the one named) with their cadences."""
    res = resources()
    settings = res.settings
    day = parse_as_of(as_of, settings.default_timezone)
    default = settings.resolved_resend_cadence()
    with res.require_current_schema().connect() as conn:
        provider_id = None if provider is None else providers.provider_id_for(conn, provider)
        rows = repo.provider_cadences(conn, provider_id)
    plans = []
    for row in rows:
        try:
            cadence = default if row.cadence is None else parse_cadence(row.cadence)
        except CadenceError as exc:
            raise ConfigurationError(f"provider {row.name!r}: resend cadence {exc}") from None
        plans.append(ProviderPlan(row.provider_id, row.name, cadence, row.cadence is not None))
    return ResendRun(day, tuple(plans), settings.default_timezone, dry_run)


def queue_provider_resends(engine: Engine, run: ResendRun, plan: ProviderPlan) -> StepCounts:
    """Decide and (unless a dry run) record every step of one provider due on the run's day,
    one transaction per chunk of invitations."""
    counts = StepCounts()
    after = 0
    while True:
        with engine.connect() if run.dry_run else engine.begin() as conn:
            batch = repo.candidates(conn, plan.provider_id, plan.cadence, run.as_of, after)
            rows: list[repo.StepRow] = []
            for c in batch:
                zone = c.timezone or run.default_timezone
                decided = plan_resend(
                    sent_on(c.first_sent_at, zone),
                    None if c.last_sent_at is None else sent_on(c.last_sent_at, zone),
                    run.as_of,
                    plan.cadence,
                    c.recorded,
                    message_waiting=c.waiting,
                )
                counts.due += decided.due
                counts.skipped[SkipReason.MESSAGE_WAITING.value] += decided.waiting
                rows += [
                    repo.StepRow(c.invitation_id, step, ResendStepState.SKIPPED, reason.value)
                    for step, reason in decided.skipped
                ]
                if decided.step is not None:
                    rows.append(
                        repo.StepRow(c.invitation_id, decided.step, ResendStepState.QUEUED, None)
                    )
            written = rows if run.dry_run else repo.record_steps(conn, rows, run.as_of)
            queued = [r for r in written if r.state is ResendStepState.QUEUED]
            if not run.dry_run:
                repo.queue_attempts(conn, queued)
        counts.queued += len(queued)
        counts.skipped.update(r.reason for r in written if r.reason is not None)
        if len(batch) < repo.CHUNK:
            break
        after = batch[-1].invitation_id
    counts.skipped = +counts.skipped  # drop reasons that counted nothing
    return counts


@task(name="queue-due-resends", cache_policy=NO_CACHE)
@phi_safe("queue-due-resends")
def queue_due_resends(run: ResendRun) -> dict[str, object]:
    """Queue (or, in a dry run, count) every step due on the run's day, provider by provider.

    Returns `{"as_of", "due", "queued", "skipped": {reason: n}, "by_provider": {name: {...}},
    "dry_run"}`.
    """
    engine = resources().require_current_schema()
    total = StepCounts()
    by_provider: dict[str, object] = {}
    for plan in run.providers:
        counts = queue_provider_resends(engine, run, plan)
        total.add(counts)
        by_provider[plan.name] = {"cadence": list(plan.cadence), **counts.as_dict()}
    run_logger().info(
        "resend cadence %s: %d due, %d queued%s",
        run.as_of.isoformat(),
        total.due,
        total.queued,
        " (dry run)" if run.dry_run else "",
    )
    return {
        "as_of": run.as_of.isoformat(),
        **total.as_dict(),
        "by_provider": by_provider,
        "dry_run": run.dry_run,
    }
