"""Availability windows, the contact cap and fairness in Open Slots, on SQLite and PostgreSQL
with a frozen, moved clock (issue #15): a Serial alert never reaches a connection whose windows
exclude the slot, the fourth offer in 7 days is `contact_cap` and the eighth day it is offered
again, and a tie in the practice's order goes to whoever was offered least recently."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from openslots import api
from openslots.domain.clock import FrozenClock, frozen_clock
from openslots.errors import OpenslotsError
from tests.tasks._dispatch import dispatch_now
from tests.tasks.test_open_slots import (
    LOCATION,
    NOON,
    PROVIDER,
    TOMORROW_10,
    add,
    explained,
    offers,
    token_for,
)


@pytest.fixture
def clock(db: Engine) -> Iterator[FrozenClock]:
    with frozen_clock(NOON) as frozen:  # Tuesday 2030-03-05, 12:00 in New York
        yield frozen


def tomorrow_at_ten(now: dt.datetime) -> str:
    """10:00 New York wall time on the day after `now` (a Wednesday for NOON)."""
    return f"{(now - dt.timedelta(hours=5)).date() + dt.timedelta(days=1)}T10:00"


def test_serial_never_offers_outside_a_connections_windows(db: Engine, clock: FrozenClock) -> None:
    first, second, third = add(db, 1), add(db, 2), add(db, 3)
    for order, cid in enumerate((first, second, third), start=1):
        api.set_alert_order(cid, order)
    # The slot is Wednesday 10:00-10:30 in New York: the third can only come on Saturdays,
    # the second's mornings hold it whole.
    assert api.set_availability(third, "Sat 09:00-11:00", "staff") == "Sat 09:00-11:00"
    assert api.set_availability(second, "mon-fri 08:00-12:00", "staff") == "Mon-Fri 08:00-12:00"
    opened = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=10)
    assert (opened["eligible"], opened["alerts_queued"]) == (2, 1)
    assert offers(db, 1) == {first: ("sent", 0), second: ("pending", 1)}
    assert explained(1) == {
        first: ("alerted", "eligible"),
        second: ("not_alerted", "serial_not_reached"),
        third: ("not_alerted", "outside_availability"),
    }
    clock.advance(dt.timedelta(minutes=10))
    dispatch_now()
    assert offers(db, 1) == {first: ("sent", 0), second: ("sent", 1)}
    clock.advance(dt.timedelta(hours=3))  # long after every timeout: still never the third
    dispatch_now()
    assert third not in offers(db, 1)
    assert explained(1)[third] == ("not_alerted", "outside_availability")


def test_a_window_ending_inside_the_slot_excludes_it(db: Engine, clock: FrozenClock) -> None:
    whole, cut = add(db, 1), add(db, 2)
    api.set_availability(whole, "Wed 10:00-10:30", "staff")
    api.set_availability(cut, "Wed 09:00-10:15", "staff")  # holds the start, not the end
    api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    assert explained(1) == {
        whole: ("alerted", "eligible"),
        cut: ("not_alerted", "outside_availability"),
    }


def test_windows_are_wall_time_across_the_dst_change(db: Engine, clock: FrozenClock) -> None:
    # New York springs forward on Sunday 2030-03-10: 09:00 is 14:00 UTC on Friday the 8th and
    # 13:00 UTC on Monday the 11th; a window of 09:00-10:00 holds both.
    mornings = add(db, 1)
    api.set_availability(mornings, "Mon-Fri 09:00-10:00", "staff")
    before = api.open_slot(PROVIDER, LOCATION, "2030-03-08T14:00:00+00:00", 60)
    after = api.open_slot(PROVIDER, LOCATION, "2030-03-11T13:00:00+00:00", 60)
    shifted = api.open_slot(PROVIDER, LOCATION, "2030-03-11T14:00:00+00:00", 60)  # 10:00 EDT
    assert [explained(s["slot_id"])[mornings] for s in (before, after, shifted)] == [
        ("alerted", "eligible"),
        ("alerted", "eligible"),
        ("not_alerted", "outside_availability"),
    ]


def test_the_fourth_offer_in_seven_days_is_capped_and_the_eighth_day_offered_again(
    db: Engine, clock: FrozenClock
) -> None:
    capped = add(db, 1)
    results = []
    for _day in range(8):
        opened = api.open_slot(PROVIDER, LOCATION, tomorrow_at_ten(clock.now()), 30)
        results.append(explained(opened["slot_id"])[capped])
        clock.advance(dt.timedelta(days=1))
    alerted, cap = ("alerted", "eligible"), ("not_alerted", "contact_cap")
    # Days 0-2 offered; days 3-6 within 7 days of three offers; day 7 (the eighth day) the
    # first offer is 7 days old and no longer counts.
    assert results == [alerted, alerted, alerted, cap, cap, cap, cap, alerted]


def test_the_cap_is_per_provider_and_zero_disables_it(
    db: Engine, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, elsewhere = add(db, 1), add(db, 1, provider="Dr. Other")
    for _ in range(3):
        api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    other = api.open_slot("Dr. Other", LOCATION, TOMORROW_10, 30)
    assert explained(other["slot_id"])[elsewhere] == ("alerted", "eligible")
    fourth = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    assert explained(fourth["slot_id"])[here] == ("not_alerted", "contact_cap")
    monkeypatch.setenv("OPENSLOTS_ALERT_MAX_PER_WEEK", "0")
    fifth = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    assert explained(fifth["slot_id"])[here] == ("alerted", "eligible")


def test_a_tie_in_the_order_goes_to_whoever_was_offered_least_recently(
    db: Engine, clock: FrozenClock
) -> None:
    a, b, c = add(db, 1), add(db, 2), add(db, 3)
    first = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=60)
    assert offers(db, first["slot_id"])[a] == ("sent", 0)  # nobody offered yet: by id
    assert api.claim_slot(token_for(db, first["slot_id"], a))["result"] == "won"
    clock.advance(dt.timedelta(hours=1))
    second = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", group_size=2)
    # b and c were never offered: they go before a, who was offered an hour ago.
    assert offers(db, second["slot_id"]) == {b: ("sent", 0), c: ("sent", 0), a: ("pending", 1)}
    # The practice's order still comes first: a tie is only a tie within it.
    api.set_alert_order(a, 1)
    clock.advance(dt.timedelta(hours=1))
    third = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial")
    assert {cid: group for cid, (_, group) in offers(db, third["slot_id"]).items()} == {
        a: 0,
        b: 1,
        c: 2,
    }


def test_a_malformed_window_names_the_wrong_part(db: Engine) -> None:
    cid = add(db, 1)
    with pytest.raises(OpenslotsError, match="unknown day `Fry`"):
        api.set_availability(cid, "Mon-Fry 08:00-12:00", "staff")
    assert api.set_availability(cid, "any", "staff") is None


def test_a_serial_group_due_later_is_skipped_once_the_cap_was_reached_meanwhile(
    db: Engine, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSLOTS_ALERT_MAX_PER_WEEK", "1")
    first, second = add(db, 1), add(db, 2)
    api.set_alert_order(first, 1)
    api.set_alert_order(second, 2)
    serial = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30, mode="serial", timeout_minutes=60)
    assert offers(db, serial["slot_id"]) == {first: ("sent", 0), second: ("pending", 1)}
    # Another slot reaches the second connection while its Serial turn is still ahead.
    blast = api.open_slot(PROVIDER, LOCATION, TOMORROW_10, 30)
    assert explained(blast["slot_id"]) == {
        first: ("not_alerted", "contact_cap"),
        second: ("alerted", "eligible"),
    }
    clock.advance(dt.timedelta(minutes=60))
    dispatch_now()
    assert offers(db, serial["slot_id"])[second] == ("skipped", 1)
    assert explained(serial["slot_id"])[second] == ("not_alerted", "contact_cap")
