"""One name key: the per-value form (connections) and the column form (staged roster rows)
agree on every text, so matching on first + last name + date of birth finds the same people."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.contact import clean_text, name_key, name_keys
from openslots.domain.normalise import clean_value

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20
) | st.sampled_from(["Mary  Ann", " José ", "ÉMILIE\tRose", "O’Neil", "Straße", "a\u00a0b"])


def column_key(first: str, last: str) -> str:
    cleaned = clean_text(pd.Series([first, last], dtype="str"))
    return str(name_keys(cleaned.iloc[[0]], cleaned.iloc[[1]].set_axis([0])).iloc[0])


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("Mary  Ann", "Smith", "mary ann|smith"),
        (" ÉMILIE ", "José", "émilie|josé"),
        ("Anne\u00a0Marie", "O’Neil", "anne marie|o’neil"),
        ("Straße", "KING, JR.", "strasse|king, jr."),
    ],
)
def test_hand_written_keys(first: str, last: str, expected: str) -> None:
    assert name_key(clean_value(first), clean_value(last)) == expected
    assert column_key(first, last) == expected


@given(first=names, last=names)
def test_both_forms_agree_on_any_text(first: str, last: str) -> None:
    """Connections get `name_key` of cleaned values (`clean_value`), staged rows the column
    form of cleaned columns (`clean_text`)."""
    assert column_key(first, last) == name_key(clean_value(first), clean_value(last))
