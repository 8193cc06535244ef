"""The name rules (domain/contact.py): the CSV row's strict rule and the EHR feed's lenient one."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.contact import is_feed_name, is_valid_name

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
