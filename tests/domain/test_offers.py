"""The Open Slots rules, by hand and (where a rule must hold for every input) by hypothesis."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.dispatch import in_quiet_hours
from openslots.domain.eligibility import AlertReason
from openslots.domain.offers import (
    ClaimResult,
    ExplainReason,
    OfferMode,
    OfferState,
    Outcome,
    claim_answer,
    explain,
    format_start,
    offer_decision,
    parse_start,
    plan_groups,
    quiet_until,
    token_refusal,
    too_late,
)
from openslots.domain.statuses import ClosedReason, SlotStatus

NY = "America/New_York"
QUIET = (dt.time(21), dt.time(8))
UTC = dt.UTC


# --- start times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T09:30", dt.datetime(2026, 12, 3, 15, 30, tzinfo=UTC)),  # CST
        ("2026-06-03T09:30", dt.datetime(2026, 6, 3, 14, 30, tzinfo=UTC)),  # CDT
        ("2026-12-03T09:30-05:00", dt.datetime(2026, 12, 3, 14, 30, tzinfo=UTC)),
        ("202612030930", dt.datetime(2026, 12, 3, 15, 30, tzinfo=UTC)),
        ("20261203093015", dt.datetime(2026, 12, 3, 15, 30, 15, tzinfo=UTC)),
        ("20261203093000.0000+0100", dt.datetime(2026, 12, 3, 8, 30, tzinfo=UTC)),
        ("202612030930-0500", dt.datetime(2026, 12, 3, 14, 30, tzinfo=UTC)),
    ],
)
def test_a_start_without_an_offset_is_the_locations_wall_time(
    text: str, expected: dt.datetime
) -> None:
    assert parse_start(text, "America/Chicago") == expected


@pytest.mark.parametrize(
    "text", ["", "2026-12", "20261203", "2026-12-03", "202613031000", "tomorrow 9am"]
)
def test_an_unreadable_start_names_the_rule_not_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=r"^start: expected") as raised:
        parse_start(text, NY)
    assert text not in str(raised.value) or not text


@given(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    st.sampled_from([NY, "America/Chicago", "Europe/Berlin", "UTC", "Australia/Lord_Howe"]),
)
def test_hl7_and_iso_starts_agree_and_keep_the_wall_time(wall: dt.datetime, zone: str) -> None:
    wall = wall.replace(microsecond=0)
    from_iso = parse_start(wall.isoformat(), zone)
    assert from_iso == parse_start(wall.strftime("%Y%m%d%H%M%S"), zone)
    assert from_iso.tzinfo is UTC
    back = from_iso.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    # Equal except for a wall time the DST change skips (it does not exist there).
    assert back == wall or abs(back - wall) <= dt.timedelta(hours=1)


def test_lead_time_is_a_strict_minimum() -> None:
    at = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert too_late(at - dt.timedelta(minutes=1), at, 0)
    assert not too_late(at + dt.timedelta(minutes=120), at, 120)
    assert too_late(at + dt.timedelta(minutes=119, seconds=59), at, 120)


# --- groups ---------------------------------------------------------------------------------


@given(st.lists(st.integers(1, 10_000), unique=True, max_size=60), st.integers(1, 7))
def test_serial_groups_keep_the_order_and_their_size(ids: list[int], size: int) -> None:
    planned = plan_groups(ids, OfferMode.SERIAL, size)
    assert [cid for cid, _ in planned] == ids
    groups = [group for _, group in planned]
    assert groups == sorted(groups)
    assert set(groups) == set(range(len(set(groups))))  # consecutive from 0
    assert all(groups.count(g) <= size for g in set(groups))
    assert all(groups.count(g) == size for g in set(groups) - {max(groups, default=0)})
    assert plan_groups(ids, OfferMode.BLAST, size) == [(cid, 0) for cid in ids]


def test_a_group_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="group_size"):
        plan_groups([1], OfferMode.SERIAL, 0)


# --- quiet hours ----------------------------------------------------------------------------


@given(
    st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2032, 12, 31),
        timezones=st.just(UTC),
    ),
    st.sampled_from([QUIET, (dt.time(1), dt.time(6)), (dt.time(22, 30), dt.time(7, 15))]),
    st.sampled_from([NY, "Europe/London", "America/Phoenix"]),
)
def test_quiet_until_is_the_next_local_end_of_the_window(
    at: dt.datetime, quiet: tuple[dt.time, dt.time], zone: str
) -> None:
    morning = quiet_until(at, quiet, zone)
    assert (morning is not None) == in_quiet_hours(at, quiet, zone)
    if morning is not None:
        assert at < morning <= at + dt.timedelta(hours=25)
        assert morning.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None) == quiet[1]
        assert not in_quiet_hours(morning, quiet, zone)


def test_quiet_hours_across_the_spring_dst_change_in_new_york() -> None:
    evening = dt.datetime(2030, 3, 10, 3, 0, tzinfo=UTC)  # 22:00 EST, 9 March
    assert quiet_until(evening, QUIET, NY) == dt.datetime(2030, 3, 10, 12, 0, tzinfo=UTC)
    assert quiet_until(evening, None, NY) is None
    autumn = dt.datetime(2030, 11, 3, 1, 30, tzinfo=UTC)  # 21:30 EDT, 2 November
    assert quiet_until(autumn, QUIET, NY) == dt.datetime(2030, 11, 3, 13, 0, tzinfo=UTC)


def test_an_offer_due_in_the_quiet_hours_waits_or_is_skipped() -> None:
    evening = dt.datetime(2030, 3, 10, 3, 0, tzinfo=UTC)
    morning = dt.datetime(2030, 3, 10, 12, 0, tzinfo=UTC)
    rules = {"quiet": QUIET, "timezone": NY, "lead_minutes": 120}
    waits = offer_decision(evening, morning + dt.timedelta(hours=2), **rules)  # type: ignore[arg-type]
    assert (waits.wait_until, waits.skip, waits.send_now) == (morning, None, False)
    skipped = offer_decision(evening, morning + dt.timedelta(hours=1), **rules)  # type: ignore[arg-type]
    assert skipped.skip is ExplainReason.QUIET_HOURS
    noon = dt.datetime(2030, 3, 10, 16, 0, tzinfo=UTC)
    assert offer_decision(noon, noon + dt.timedelta(hours=3), **rules).send_now  # type: ignore[arg-type]
    late = offer_decision(noon, noon + dt.timedelta(hours=1), **rules)  # type: ignore[arg-type]
    assert late.skip is ExplainReason.LEAD_TIME


# --- claims and explain ---------------------------------------------------------------------


def test_what_a_claim_answers_when_it_did_not_win_the_update() -> None:
    assert claim_answer(SlotStatus.CLAIMED, claimed_offer_id=4, offer_id=4) is ClaimResult.WON
    assert claim_answer(SlotStatus.CLAIMED, claimed_offer_id=4, offer_id=5) is ClaimResult.TAKEN
    assert claim_answer(SlotStatus.CLOSED, claimed_offer_id=None, offer_id=5) is (
        ClaimResult.CLOSED
    )
    assert claim_answer(SlotStatus.OPEN, claimed_offer_id=None, offer_id=5) is (ClaimResult.EXPIRED)
    assert token_refusal("expired") is ClaimResult.EXPIRED
    assert {token_refusal(r) for r in ("malformed", "tampered", "wrong-purpose")} == {
        ClaimResult.INVALID
    }


def _explain(
    eligibility: AlertReason = AlertReason.ELIGIBLE,
    state: OfferState | None = None,
    reason: str | None = None,
    won: bool = False,
    status: SlotStatus = SlotStatus.OPEN,
    closed: ClosedReason | None = None,
    declined: bool = False,
) -> tuple[Outcome, ExplainReason]:
    return explain(
        eligibility,
        offer_state=state,
        offer_reason=reason,
        won=won,
        slot_status=status,
        closed_reason=closed,
        declined=declined,
    )


def test_explain_gives_every_reason_code() -> None:
    no = Outcome.NOT_ALERTED
    cases = {
        _explain(state=OfferState.SENT, won=True): (Outcome.CLAIMED, ExplainReason.ELIGIBLE),
        _explain(state=OfferState.SENT): (Outcome.ALERTED, ExplainReason.ELIGIBLE),
        _explain(state=OfferState.SENT, declined=True): (
            Outcome.DECLINED,
            ExplainReason.DECLINED_OFFER,
        ),
        _explain(state=OfferState.PENDING): (no, ExplainReason.SERIAL_NOT_REACHED),
        _explain(state=OfferState.PENDING, reason="quiet_hours"): (no, ExplainReason.QUIET_HOURS),
        _explain(state=OfferState.SKIPPED, reason="quiet_hours"): (no, ExplainReason.QUIET_HOURS),
        _explain(state=OfferState.SKIPPED, reason="lead_time"): (no, ExplainReason.LEAD_TIME),
        _explain(state=OfferState.WITHDRAWN): (no, ExplainReason.SLOT_CLOSED),
        _explain(status=SlotStatus.CLOSED, closed=ClosedReason.LEAD_TIME): (
            no,
            ExplainReason.LEAD_TIME,
        ),
        _explain(status=SlotStatus.CLAIMED): (no, ExplainReason.SLOT_CLOSED),
    }
    for got, expected in cases.items():
        assert got == expected
    for reason in AlertReason:
        if reason is not AlertReason.ELIGIBLE:
            assert _explain(reason) == (no, ExplainReason(reason.value))
    codes = {r for _, r in cases} | {ExplainReason(r.value) for r in AlertReason}
    assert codes == set(ExplainReason)


@given(st.sampled_from(list(AlertReason)), st.sampled_from([None, *OfferState]), st.booleans())
def test_an_offer_outranks_todays_eligibility(
    eligibility: AlertReason, state: OfferState | None, won: bool
) -> None:
    """A connection with an offer was eligible when the slot opened: a later pause or opt-out
    does not rewrite what happened to it."""
    outcome, reason = _explain(eligibility, state=state, won=won and state is OfferState.SENT)
    if state is not None:
        assert reason not in {ExplainReason(r.value) for r in AlertReason} - {
            ExplainReason.ELIGIBLE
        }
    assert (outcome is Outcome.NOT_ALERTED) == (state is not OfferState.SENT)


def test_the_start_reads_in_the_locations_wall_time() -> None:
    at = dt.datetime(2030, 3, 10, 14, 5, tzinfo=UTC)
    assert format_start(at, NY) == "Sun 10 Mar 2030, 10:05 AM"
    assert format_start(at, "Asia/Tokyo") == "Sun 10 Mar 2030, 11:05 PM"
