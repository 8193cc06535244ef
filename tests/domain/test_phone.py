"""Phone normalisation: the vectorised fast path must agree with phonenumbers on every input."""

from __future__ import annotations

import pandas as pd
import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.domain.phone import normalise_phones, to_e164


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
    assert invalid.tolist() == [
        bool(v.strip()) and not exp for v, exp in zip(values, expected, strict=True)
    ]


def test_reference_is_phonenumbers() -> None:
    number = phonenumbers.parse("+1 415 555 2671", "US")
    assert to_e164("+1 415 555 2671", "US") == phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164
    )
