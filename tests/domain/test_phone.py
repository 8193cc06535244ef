"""Phone normalisation: hand-written E.164 answers for real formats, properties that do not
depend on how the answer is computed, and the vectorised fast path checked against the
one-value reference on every input."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.domain.phone import _fast_e164, normalise_phones, phone_value, to_e164


def test_the_issue_examples_are_one_number() -> None:
    e164, invalid = normalise_phones(
        pd.Series(["(212) 555-0102", "212-555-0102", "+1 212 555 0102"]), "US"
    )
    assert e164.tolist() == ["+12125550102"] * 3
    assert not invalid.any()


def test_empty_is_not_invalid_and_garbage_is() -> None:
    e164, invalid = normalise_phones(pd.Series(["", "  ", "12", "call me", "800-555-0100"]), "US")
    assert e164.tolist() == ["", "", "", "", ""]
    assert invalid.tolist() == [False, False, True, True, True]  # toll free is no mobile


def test_other_regions_use_their_own_rules() -> None:
    # A UK mobile and a UK landline: only the mobile is accepted.
    e164, invalid = normalise_phones(pd.Series(["07400 123456", "020 7946 0018"]), "GB")
    assert e164.tolist() == ["+447400123456", ""]
    assert invalid.tolist() == [False, True]


digits = st.text(alphabet="0123456789", min_size=0, max_size=13)
formatted = st.builds(
    lambda prefix, body, sep: prefix + sep.join([body[:3], body[3:6], body[6:]]),
    st.sampled_from(["", "+1 ", "1", "+44 ", "+", "(", "00"]),
    digits,
    st.sampled_from(["", " ", "-", ".", ") "]),
)
nanp = st.builds(
    lambda a, b, c: f"{a}{b}{c:04d}",
    st.integers(200, 999),
    st.integers(200, 999),
    st.integers(0, 9999),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(formatted, nanp, st.text(max_size=15)), min_size=1, max_size=30),
    st.sampled_from(["US", "GB", "DE", "CA"]),
)
def test_fast_path_agrees_with_phonenumbers(values: list[str], region: str) -> None:
    e164, invalid = normalise_phones(pd.Series(values, dtype="str"), region)
    expected = [to_e164(v.strip(), region) or "" if v.strip() else "" for v in values]
    assert e164.tolist() == expected
    assert [phone_value(v, region) for v in values] == expected  # the one-value form
    assert invalid.tolist() == [
        bool(v.strip()) and not exp for v, exp in zip(values, expected, strict=True)
    ]


@settings(max_examples=400, deadline=None)
@given(st.one_of(formatted, nanp, st.text(max_size=15)), st.sampled_from(["US", "GB", "DE", "CA"]))
def test_the_one_value_fast_path_answers_only_what_phonenumbers_answers(
    value: str, region: str
) -> None:
    # `phone_value` is cached: its fast path is checked here directly, value by value.
    fast = _fast_e164(value.strip(), region)
    assert fast is None or fast == to_e164(value.strip(), region)


def test_the_one_value_fast_path_takes_the_usual_forms() -> None:
    assert _fast_e164("(212) 555-0102", "US") == "+12125550102"
    assert _fast_e164("+1 212 555 0102", "US") == "+12125550102"
    assert _fast_e164("07911 123456", "GB") is None  # trunk prefix: phonenumbers decides
    assert _fast_e164("800-555-0100", "US") is None  # toll free


# (typed value, default region) -> E.164, written out by hand; None = not a usable mobile.
BY_HAND = [
    ("(212) 555-0102", "US", "+12125550102"),
    ("212.555.0102", "US", "+12125550102"),
    ("1-212-555-0102", "US", "+12125550102"),  # NANP trunk prefix
    ("+1 415 555 2671", "GB", "+14155552671"),  # international form: the region does not matter
    ("+44 7911 123456", "US", "+447911123456"),
    ("07911 123456", "GB", "+447911123456"),  # UK mobile, national form
    ("020 7946 0018", "GB", None),  # London landline: GB tells mobiles from landlines
    ("+44 20 7946 0018", "US", None),
    ("0151 23456789", "DE", "+4915123456789"),  # German mobile
    ("030 12345678", "DE", None),  # Berlin landline
    ("604-555-0199", "CA", "+16045550199"),
    ("800-555-0100", "US", None),  # toll free
    ("900-555-0100", "US", None),  # premium rate
    ("555-0102", "US", None),  # no area code
    ("212-555-01023", "US", None),  # a digit too many
    ("12", "US", None),
    ("call me", "US", None),
    ("", "US", None),
]


@pytest.mark.parametrize(("raw", "region", "expected"), BY_HAND)
def test_to_e164_by_hand(raw: str, region: str, expected: str | None) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(("raw", "region", "expected"), BY_HAND)
def test_fast_path_by_hand(raw: str, region: str, expected: str | None) -> None:
    e164, invalid = normalise_phones(pd.Series([raw], dtype="str"), region)
    assert e164.tolist() == [expected or ""]
    assert invalid.tolist() == [bool(raw) and expected is None]


E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ITU-T E.164: at most 15 digits after the plus


@settings(max_examples=300, deadline=None)
@given(st.one_of(formatted, nanp, st.text(max_size=20)), st.sampled_from(["US", "GB", "DE"]))
def test_an_answer_is_e164_and_its_own_answer(raw: str, region: str) -> None:
    answer = to_e164(raw, region)
    if answer is not None:
        assert E164.fullmatch(answer)
        assert to_e164(answer, region) == answer  # normalising twice changes nothing
        assert to_e164(answer, "GB" if region == "US" else "US") == answer  # region-free form


@settings(max_examples=200, deadline=None)
@given(nanp, st.sampled_from(["", " ", "-", ".", "  "]), st.booleans())
def test_formatting_does_not_change_the_number(number: str, sep: str, brackets: bool) -> None:
    area = f"({number[:3]}) " if brackets else number[:3] + sep
    typed = area + number[3:6] + sep + number[6:]
    assert to_e164(typed, "US") == to_e164(number, "US")
    if to_e164(number, "US") is not None:
        assert to_e164(number, "US") == "+1" + number
