"""Signed, expiring, URL-safe tokens for the links in our messages (unsubscribe, claim). Pure.

A token is `base64url(purpose.subject.expiry) + "." + base64url(HMAC-SHA256(key, payload))`.
The subject is an opaque row id (never a patient's value); the key comes from
OPENSLOTS_SECRET_KEY. Checking is done in a fixed order so that each refusal has its own
reason: malformed, then tampered (signature), then wrong-purpose, then expired.

Generating and storing a key when the setting is unset needs a table (a schema change for the
lead): until then the key is a parameter and the caller decides where it comes from.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> now = datetime(2025, 1, 1, tzinfo=UTC)
    >>> token = make_token(b"k" * 32, "unsubscribe", 42, now + timedelta(days=1))
    >>> read_token(b"k" * 32, token, "unsubscribe", now)
    '42'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime

from openslots.errors import InvalidToken

__all__ = ["InvalidToken", "make_token", "read_token"]

# Purpose and subject are joined with "." inside the payload, so neither may contain one.
_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


def _key_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # b64decode skips characters outside the alphabet; a token with any is malformed, not forged.
    if not _B64.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def make_token(key: bytes | str, purpose: str, subject: int | str, expires_at: datetime) -> str:
    """A token that `read_token` accepts for `purpose` until `expires_at` (an aware datetime)."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    subject_text = str(subject)
    if not _PART.match(purpose) or not _PART.match(subject_text):
        raise ValueError("purpose and subject must be 1-64 characters of [A-Za-z0-9_-]")
    payload = f"{purpose}.{subject_text}.{int(expires_at.timestamp())}".encode("ascii")
    return f"{_b64(payload)}.{_b64(_sign(_key_bytes(key), payload))}"


def read_token(key: bytes | str, token: str, purpose: str, now: datetime) -> str:
    """The subject of a valid token, or InvalidToken with the first reason it fails.

    `now` is an aware datetime from the one clock, so tests move time instead of sleeping.
    """
    try:
        payload_part, signature_part = token.split(".")
        payload = _unb64(payload_part)
        signature = _unb64(signature_part)
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not hmac.compare_digest(signature, _sign(_key_bytes(key), payload)):
        raise InvalidToken("tampered")
    try:
        token_purpose, subject, expiry = payload.decode("ascii").split(".")
        expires_at = int(expiry)
    except (UnicodeDecodeError, ValueError):
        # Only a holder of the key can sign a payload, so this means a bug, not an attack.
        raise InvalidToken("malformed") from None
    if not hmac.compare_digest(token_purpose, purpose):
        raise InvalidToken("wrong-purpose")
    if now.timestamp() >= expires_at:
        raise InvalidToken("expired")
    return subject
