"""Open Slots rules, pure: when a slot starts, who is offered it in which group and when, whether
an offer may go out now, what a claim answers, and why each connection was or was not alerted.

Times are aware instants (UTC from the one clock); a start written without an offset is wall
time at the slot's location. Quiet hours and the lead time are the only reasons an eligible
connection's offer waits or is skipped; Priority never enters here (a label, not an order).

Example:
    >>> import datetime as dt
    >>> parse_start("202612031000", "America/Chicago").isoformat()
    '2026-12-03T16:00:00+00:00'
    >>> plan_groups([5, 3, 9], OfferMode.SERIAL, group_size=2)
    [(5, 0), (3, 0), (9, 1)]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from openslots.domain.dispatch import in_quiet_hours
from openslots.domain.eligibility import AlertReason
from openslots.domain.statuses import ClosedReason, SlotStatus

CLAIM_PURPOSE = "claim"  # a claim token's purpose; its subject is an offer id


class OfferMode(StrEnum):
    """Blast: every eligible connection at once. Serial: one group per timeout, in order."""

    BLAST = "blast"
    SERIAL = "serial"


class OfferState(StrEnum):
    """An offer (`offers.state`): an intent until dispatch turns it into messages."""

    PENDING = "pending"  # due at `due_at` (waiting for its group's turn or for the morning)
    SENT = "sent"  # its messages are in the outbox
    WITHDRAWN = "withdrawn"  # the slot was claimed or closed first: never sent
    SKIPPED = "skipped"  # could not go out at an allowed time before the slot (`reason`)


class ClaimResult(StrEnum):
    """What a claim answers; only `won` books the slot."""

    WON = "won"
    TAKEN = "taken"  # someone else won it
    EXPIRED = "expired"  # the link's time passed
    CLOSED = "closed"  # the practice or the EHR closed it, or the cutoff passed
    INVALID = "invalid"  # forged, altered, or naming no offer
    DECLINED = "declined"  # this patient said "Not for me" (final for them and this slot)


class Outcome(StrEnum):
    """What happened to one connection for one slot (`slots explain`)."""

    ALERTED = "alerted"
    CLAIMED = "claimed"
    NOT_ALERTED = "not_alerted"
    DECLINED = "declined"  # alerted, and said "Not for me"


class ExplainReason(StrEnum):
    """The eligibility reasons plus what the slot's own course adds."""

    ELIGIBLE = AlertReason.ELIGIBLE.value
    NOT_APPROVED = AlertReason.NOT_APPROVED.value
    PAUSED = AlertReason.PAUSED.value
    DECLINED = AlertReason.DECLINED.value
    NO_MRN = AlertReason.NO_MRN.value
    OPTED_OUT = AlertReason.OPTED_OUT.value
    OTHER_LOCATION = AlertReason.OTHER_LOCATION.value
    OUTSIDE_AVAILABILITY = AlertReason.OUTSIDE_AVAILABILITY.value
    CONTACT_CAP = AlertReason.CONTACT_CAP.value
    QUIET_HOURS = "quiet_hours"  # waiting for the morning, or skipped because of it
    SERIAL_NOT_REACHED = "serial_not_reached"  # a later serial group, not due yet
    SLOT_CLOSED = "slot_closed"  # claimed or closed before this connection's turn
    LEAD_TIME = "lead_time"  # the slot started too soon to offer
    DECLINED_OFFER = "declined_offer"  # the patient declined this slot's offer


# --- start times ----------------------------------------------------------------------------

# HL7 DTM: YYYYMMDDHHMM[SS[.S+]][+/-ZZZZ]; minutes are required for an appointment time.
_DTM = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?(?:([+-])(\d{2})(\d{2}))?$"
)


def parse_start(text: str, timezone: str) -> dt.datetime:
    """The instant a slot starts, in UTC, from ISO 8601 (`2026-12-03T09:30`, with or without
    an offset) or an HL7 DTM (`202612030930`, `202612030930-0500`). Without an offset the time
    is wall time in `timezone` (the location's). ValueError names the rule, never the value."""
    text = text.strip()
    found = _DTM.match(text)
    try:
        if found:
            year, month, day, hour, minute, second, sign, oh, om = found.groups()
            offset: dt.tzinfo | None = None
            if sign:
                delta = dt.timedelta(hours=int(oh), minutes=int(om))
                offset = dt.timezone(delta if sign == "+" else -delta)
            parsed = dt.datetime(
                int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                tzinfo=offset,
            )  # fmt: skip
        elif "T" in text or " " in text:  # a date alone is no appointment time
            parsed = dt.datetime.fromisoformat(text)
        else:
            raise ValueError
    except ValueError:
        raise ValueError("start: expected ISO 8601 or an HL7 timestamp with minutes") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(timezone))
    return parsed.astimezone(dt.UTC)


def too_late(start: dt.datetime, now: dt.datetime, lead_minutes: int) -> bool:
    """A slot starting sooner than the lead time (or already started) is offered to no one.

    >>> at = dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC)
    >>> [too_late(at + dt.timedelta(minutes=m), at, 120) for m in (119, 120)]
    [True, False]
    """
    return start - now < dt.timedelta(minutes=lead_minutes)


# --- who, in which group, when ----------------------------------------------------------------


def plan_groups(
    ordered_ids: Sequence[int], mode: OfferMode, group_size: int = 1
) -> list[tuple[int, int]]:
    """(connection id, group number) in the practice's order: Blast puts everyone in group 0;
    Serial makes groups of `group_size`."""
    if mode is OfferMode.BLAST:
        return [(cid, 0) for cid in ordered_ids]
    if group_size < 1:
        raise ValueError("group_size must be at least 1")
    return [(cid, index // group_size) for index, cid in enumerate(ordered_ids)]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible connection as the Serial order sees it."""

    connection_id: int
    alert_order: int | None  # the practice's order (None: after every ordered one)
    last_offered_at: dt.datetime | None  # the provider's latest offer sent to it


def fair_order(candidates: Sequence[Candidate]) -> list[int]:
    """The practice's order; where it leaves a tie, whoever was offered least recently (never
    first) goes first, so the same few patients do not get every offer; then the id.

    >>> at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    >>> fair_order([Candidate(1, None, at), Candidate(2, None, None), Candidate(3, 1, at)])
    [3, 2, 1]
    """
    never = dt.datetime.min.replace(tzinfo=dt.UTC)
    return [
        c.connection_id
        for c in sorted(
            candidates,
            key=lambda c: (
                c.alert_order is None,
                c.alert_order or 0,
                c.last_offered_at or never,
                c.connection_id,
            ),
        )
    ]


def group_due(opened_at: dt.datetime, group: int, timeout_minutes: int) -> dt.datetime:
    """When a group becomes due: each one `timeout_minutes` after the one before."""
    return opened_at + dt.timedelta(minutes=timeout_minutes * group)


def quiet_until(
    at: dt.datetime, quiet: tuple[dt.time, dt.time] | None, timezone: str
) -> dt.datetime | None:
    """The end of the quiet hours `at` falls in (the next local `end` time, DST included), or
    None when `at` is outside them (or they are off). Window [start, end), local wall time."""
    if quiet is None or not in_quiet_hours(at, quiet, timezone):
        return None
    end = quiet[1]
    zone = ZoneInfo(timezone)
    local = at.astimezone(zone)
    day = local.date() if local.time() < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a due offer: send now, wait until `wait_until`, or skip for `skip`."""

    wait_until: dt.datetime | None = None
    skip: ExplainReason | None = None

    @property
    def send_now(self) -> bool:
        return self.wait_until is None and self.skip is None


def offer_decision(
    now: dt.datetime,
    start: dt.datetime,
    *,
    quiet: tuple[dt.time, dt.time] | None,
    timezone: str,
    lead_minutes: int,
) -> Decision:
    """A due offer goes out now, unless the quiet hours hold it until the morning; it is
    skipped when the slot would start within the lead time of when it could go out (reason
    `quiet_hours` when the wait caused that, else `lead_time`)."""
    morning = quiet_until(now, quiet, timezone)
    if morning is None:
        return (
            Decision(skip=ExplainReason.LEAD_TIME)
            if too_late(start, now, lead_minutes)
            else (Decision())
        )
    if too_late(start, morning, lead_minutes):
        return Decision(skip=ExplainReason.QUIET_HOURS)
    return Decision(wait_until=morning)


# --- claims ---------------------------------------------------------------------------------


def claim_answer(status: SlotStatus, *, claimed_offer_id: int | None, offer_id: int) -> ClaimResult:
    """What a claim that did not win the conditional update answers (the slot was not open)."""
    if status is SlotStatus.CLAIMED:
        return ClaimResult.WON if claimed_offer_id == offer_id else ClaimResult.TAKEN
    if status is SlotStatus.CLOSED:
        return ClaimResult.CLOSED
    return ClaimResult.EXPIRED  # open, but the conditional update refused it: it has started


def token_refusal(reason: str) -> ClaimResult:
    """A claim token's refusal (domain.tokens' reasons) as a claim result."""
    return ClaimResult.EXPIRED if reason == "expired" else ClaimResult.INVALID


# --- explain --------------------------------------------------------------------------------


def explain(
    eligibility: AlertReason,
    *,
    offer_state: OfferState | None,
    offer_reason: str | None,
    won: bool,
    slot_status: SlotStatus,
    closed_reason: ClosedReason | None,
    declined: bool = False,
) -> tuple[Outcome, ExplainReason]:
    """Why one connection was or was not alerted for one slot.

    A connection with an offer was eligible when the slot opened: what became of its offer is
    the answer. Without one, the eligibility reason today, or, for an eligible one, what kept
    the slot from reaching it (lead time at opening, or the slot no longer open).
    """
    if won:
        return Outcome.CLAIMED, ExplainReason.ELIGIBLE
    if declined:
        return Outcome.DECLINED, ExplainReason.DECLINED_OFFER
    if offer_state is OfferState.SENT:
        return Outcome.ALERTED, ExplainReason.ELIGIBLE
    if offer_state is OfferState.SKIPPED:
        return Outcome.NOT_ALERTED, ExplainReason(offer_reason or ExplainReason.LEAD_TIME)
    if offer_state is OfferState.WITHDRAWN:
        return Outcome.NOT_ALERTED, ExplainReason.SLOT_CLOSED
    if offer_state is OfferState.PENDING:
        if offer_reason == ExplainReason.QUIET_HOURS:
            return Outcome.NOT_ALERTED, ExplainReason.QUIET_HOURS
        return Outcome.NOT_ALERTED, ExplainReason.SERIAL_NOT_REACHED
    if eligibility is not AlertReason.ELIGIBLE:
        return Outcome.NOT_ALERTED, ExplainReason(eligibility.value)
    if closed_reason is ClosedReason.LEAD_TIME:
        return Outcome.NOT_ALERTED, ExplainReason.LEAD_TIME
    if slot_status is not SlotStatus.OPEN:
        return Outcome.NOT_ALERTED, ExplainReason.SLOT_CLOSED
    return Outcome.NOT_ALERTED, ExplainReason.ELIGIBLE  # became eligible after the slot opened


# --- the message ----------------------------------------------------------------------------


def format_start(start: dt.datetime, timezone: str) -> str:
    """The start as a patient reads it, in the location's wall time.

    >>> format_start(dt.datetime(2025, 3, 4, 14, 30, tzinfo=dt.UTC), "America/New_York")
    'Tue 4 Mar 2025, 9:30 AM'
    """
    local = start.astimezone(ZoneInfo(timezone))
    hour = local.hour % 12 or 12
    return f"{local:%a} {local.day} {local:%b %Y}, {hour}:{local:%M %p}"
