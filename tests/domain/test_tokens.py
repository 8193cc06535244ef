"""Signed link tokens: a round trip works, and each way of breaking one has its own reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.tokens import make_token, read_token
from openslots.errors import InvalidToken

KEY = "a-test-key-that-is-long-enough-0123456789"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)


def _reason(token: str, *, key: str = KEY, purpose: str = "unsubscribe", now: datetime = NOW):
    with pytest.raises(InvalidToken) as caught:
        read_token(key, token, purpose, now)
    return caught.value.reason


def test_round_trip_is_url_safe() -> None:
    token = make_token(KEY, "unsubscribe", 123456, LATER)
    assert read_token(KEY, token, "unsubscribe", NOW) == "123456"
    assert all(c.isalnum() or c in "-_." for c in token)


def test_tampered_payload_or_signature_is_refused() -> None:
    token = make_token(KEY, "unsubscribe", 7, LATER)
    other = make_token(KEY, "unsubscribe", 8, LATER)
    payload, signature = token.split(".")
    assert _reason(f"{other.split('.')[0]}.{signature}") == "tampered"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert _reason(f"{payload}.{flipped}") == "tampered"
    assert _reason(token, key=KEY + "x") == "tampered"


def test_wrong_purpose_and_expiry_have_their_own_reasons() -> None:
    claim = make_token(KEY, "claim", 7, LATER)
    assert _reason(claim) == "wrong-purpose"
    token = make_token(KEY, "unsubscribe", 7, LATER)
    assert _reason(token, now=LATER) == "expired"
    assert read_token(KEY, token, "unsubscribe", LATER - timedelta(seconds=1)) == "7"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.???", "é.é"])
def test_malformed_tokens(garbage: str) -> None:
    assert _reason(garbage) == "malformed"


def test_refusal_never_quotes_the_token() -> None:
    token = make_token(KEY, "unsubscribe", 99, LATER)
    with pytest.raises(InvalidToken) as caught:
        read_token(KEY, token, "unsubscribe", LATER)
    assert token not in str(caught.value)


def test_naive_expiry_and_bad_parts_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        make_token(KEY, "unsubscribe", 1, datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        make_token(KEY, "un.subscribe", 1, LATER)


@given(st.integers(min_value=1, max_value=2**62), st.binary(min_size=16, max_size=64))
def test_any_id_and_key_round_trip(subject: int, key: bytes) -> None:
    token = make_token(key, "claim", subject, LATER)
    assert read_token(key, token, "claim", NOW) == str(subject)
