"""Availability windows: the syntax, errors that name the wrong part, the whole-slot rule, and
wall time across a DST change (America/New_York springs forward on 2026-03-08)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.availability import (
    AvailabilityError,
    format_windows,
    normalise_windows,
    parse_windows,
    slot_fits,
    text_fits,
)

NY = "America/New_York"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Mon-Fri 08:00-12:00; Sat 09:00-11:00", "Mon-Fri 08:00-12:00; Sat 09:00-11:00"),
        ("mon,tue,wed 08:00-09:30", "Mon-Wed 08:00-09:30"),
        ("Sat-Mon 10:00-24:00;", "Mon,Sat-Sun 10:00-24:00"),
        ("  Sun 00:00-01:00 ", "Sun 00:00-01:00"),
        ("any", None),
        ("ANY", None),
        ("", None),
    ],
)
def test_canonical_text(text: str, canonical: str | None) -> None:
    assert normalise_windows(text) == canonical
    if canonical is not None:  # the canonical text parses to itself
        assert normalise_windows(canonical) == canonical


@pytest.mark.parametrize(
    ("text", "part", "rule"),
    [
        ("Mon-Fry 08:00-12:00", "Fry", "unknown day"),
        ("Mon-Fri 08:00-12:00; Sta 09:00-11:00", "Sta", "unknown day"),
        ("Mon 8:00-12:00", "8:00", "expected HH:MM, got"),
        ("Mon 08:00-25:00", "25:00", "no such time"),
        ("Mon 08:61-09:00", "08:61", "no such time"),
        ("Mon 12:00-08:00", "12:00-08:00", "the end must be after the start in"),
        ("Mon 08:00", "08:00", "expected a span HH:MM-HH:MM, got"),
        ("08:00-12:00", "08:00-12:00", "expected `DAYS HH:MM-HH:MM`, got"),
        ("Mon,,Tue 08:00-12:00", "Mon,,Tue", "empty day in"),
    ],
)
def test_an_error_names_the_wrong_part(text: str, part: str, rule: str) -> None:
    with pytest.raises(AvailabilityError) as caught:
        parse_windows(text)
    assert (caught.value.part, caught.value.rule) == (part, rule)
    assert f"`{part}`" in str(caught.value)


WEEKDAY_MORNINGS = parse_windows("Mon-Fri 08:00-12:00")


@pytest.mark.parametrize(
    ("start", "minutes", "fits"),
    [
        (utc(2026, 12, 2, 13, 0), 30, True),  # Wed 08:00-08:30 EST: at the window's start
        (utc(2026, 12, 2, 16, 30), 30, True),  # 11:30-12:00: ends at the window's end
        (utc(2026, 12, 2, 16, 45), 30, False),  # 11:45-12:15: the whole slot must fit
        (utc(2026, 12, 2, 12, 45), 30, False),  # 07:45: starts before
        (utc(2026, 12, 5, 14, 0), 30, False),  # Saturday
        (utc(2026, 12, 2, 16, 59), None, True),  # no length: the instant it starts
        (utc(2026, 12, 2, 17, 0), None, False),  # 12:00 itself is outside [08:00, 12:00)
    ],
)
def test_the_whole_slot_in_the_locations_wall_time(
    start: dt.datetime, minutes: int | None, fits: bool
) -> None:
    assert slot_fits(WEEKDAY_MORNINGS, start, minutes, NY) is fits


def test_a_slot_running_past_midnight_fits_no_window() -> None:
    late = parse_windows("Fri-Sat 20:00-24:00")
    assert slot_fits(late, utc(2026, 12, 5, 4, 30), 30, NY)  # Fri 23:30-24:00
    assert not slot_fits(late, utc(2026, 12, 5, 4, 45), 30, NY)  # Fri 23:45 - Sat 00:15


def test_windows_keep_their_wall_hours_across_a_dst_change() -> None:
    # 08:00 New York is 13:00 UTC on Friday (EST) and 12:00 UTC on Monday (EDT).
    assert slot_fits(WEEKDAY_MORNINGS, utc(2026, 3, 6, 13, 0), 60, NY)
    assert slot_fits(WEEKDAY_MORNINGS, utc(2026, 3, 9, 12, 0), 60, NY)
    assert not slot_fits(WEEKDAY_MORNINGS, utc(2026, 3, 6, 12, 0), 60, NY)  # Fri 07:00 EST
    assert not slot_fits(WEEKDAY_MORNINGS, utc(2026, 3, 9, 15, 30), 60, NY)  # Mon 11:30 EDT
    # A 60-minute slot from Sunday 01:30 EST ends at 03:30 EDT on the wall clock.
    assert not slot_fits(parse_windows("Sun 01:00-03:00"), utc(2026, 3, 8, 6, 30), 60, NY)
    assert slot_fits(parse_windows("Sun 01:00-04:00"), utc(2026, 3, 8, 6, 30), 60, NY)


def test_no_windows_is_any_time_and_a_corrupt_row_holds_nothing() -> None:
    assert slot_fits((), utc(2026, 12, 5, 3, 0), 600, NY)
    assert text_fits(None, utc(2026, 12, 5, 3, 0), 30, NY)
    assert not text_fits("Mon-Fry 08:00-12:00", utc(2026, 12, 2, 13, 0), 30, NY)


days = st.sets(st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]), min_size=1)
spans = st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda s: s[0] < s[1])


@given(st.lists(st.tuples(days, spans), min_size=1, max_size=4))
def test_the_canonical_text_means_the_same_windows(entries: list) -> None:
    text = "; ".join(
        f"{','.join(sorted(d))} {a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}"
        for d, (a, b) in entries
    )
    windows = parse_windows(text)
    assert parse_windows(format_windows(windows)) == windows
