"""The name rules (domain/contact.py): the CSV row's strict rule and the EHR feed's lenient one;
every check's one-value form decides as its column form on any text."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.domain import contact
from openslots.domain.contact import EMAIL_PATTERN, is_feed_name, is_valid_name

SUFFIXED = ["King, Jr.", "Ortega III", "St. John-Smith", "García Márquez", "O’Neil", "O'Brien"]
OTHER_SCRIPTS = ["अनिल", "Jose\u0301", "Nguyễn", "王小明", "Zoë"]  # marks, decomposed accents
REFUSED_BY_CSV = ["R2D2", "TEST1", "Ann<b>", "a@b", "Ann\x07", ",King", ".Jr", "-x", "'", "4"]


@pytest.mark.parametrize("name", SUFFIXED + OTHER_SCRIPTS)
def test_csv_rule_accepts_suffixes_and_every_script(name: str) -> None:
    assert is_valid_name(pd.Series([name], dtype="str")).tolist() == [True]


@pytest.mark.parametrize("name", REFUSED_BY_CSV)
def test_csv_rule_refuses_digits_markup_control_characters_and_leading_punctuation(
    name: str,
) -> None:
    assert is_valid_name(pd.Series([name], dtype="str")).tolist() == [False]


def test_feed_rule_needs_a_letter_and_no_control_character() -> None:
    names = ["TEST1", "NOPV1PATIENT", "Ann<b>", ",King", "4", "--", "", "Ann\x07"]
    assert is_feed_name(pd.Series(names, dtype="str")).tolist() == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


@given(st.lists(st.text(max_size=12), max_size=8))
def test_every_name_a_roster_accepts_a_feed_accepts(names: list[str]) -> None:
    values = pd.Series(names, dtype="str")
    assert not (is_valid_name(values) & ~is_feed_name(values)).any()


# Text a roster cell may hold: any character, and the ones the rules care about made common.
RULE_CHARACTERS = "aZé’'-., ,\u0301\u0915\u093f0979@<>\x00\x07\x1f\x7f\u00a0\t٣"
cells = st.one_of(
    st.text(max_size=14),
    st.text(alphabet=RULE_CHARACTERS, max_size=14),
    st.from_regex(EMAIL_PATTERN, fullmatch=True),
    st.from_regex(r"[0-9٣]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.dates(dt.date(1, 1, 1)).map(dt.date.isoformat),
    st.builds(
        "{:04d}-{:02d}-{:02d}".format, st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(cells, min_size=1, max_size=12))
def test_one_value_forms_agree_with_the_columns(values: list[str]) -> None:
    column = pd.Series(values, dtype="str")
    assert [contact.valid_name(v) for v in values] == is_valid_name(column).tolist()
    assert [contact.feed_name(v) for v in values] == is_feed_name(column).tolist()
    assert [contact.valid_email(v) for v in values] == contact.is_valid_email(column).tolist()
    assert [contact.date_format(v) for v in values] == contact.has_date_format(column).tolist()
    parsed = contact.parse_dates(column)
    assert [contact.parse_date(v) for v in values] == [
        None if pd.isna(d) else (d.year, d.month, d.day) for d in parsed
    ]
    has_control = column.str.contains(contact.CONTROL_CHARACTERS, regex=True)
    assert [contact.has_control(v) for v in values] == has_control.tolist()
