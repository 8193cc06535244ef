"""Helpers for the dispatch tests: one whole dispatch in-process, and settings that point the
senders at the loopback SMTP and Twilio servers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from openslots.tasks.dispatch import DispatchCounts, dispatch_outbox, materialise_intents
from tests.smtp_server import SmtpSink
from tests.twilio_server import ACCOUNT_SID, AUTH_TOKEN, TwilioServer

TWILIO_FROM = "+14155550100"
T = TypeVar("T")


def at_once(fn: Callable[[], T], count: int = 2) -> list[T]:
    """Run `fn` in `count` threads released together (each opens its own connections); the
    results in finishing order. The first error of any thread is raised."""
    results: list[T] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def one() -> None:
        try:
            start.wait()
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def dispatch_now(limit: int | None = None) -> DispatchCounts:
    """What the dispatch flow does, without Prefect: materialise owed intents, then send."""
    materialised = materialise_intents.fn()
    counts = dispatch_outbox.fn(limit)
    counts.materialised = materialised
    return counts


def use_smtp(monkeypatch: pytest.MonkeyPatch, sink: SmtpSink) -> None:
    for name, value in {
        "EMAIL_BACKEND": "smtp",
        "SMTP_HOST": sink.host,
        "SMTP_PORT": str(sink.port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": "alerts@clinic.example",
        "SMTP_TIMEOUT_SECONDS": "5",
    }.items():
        monkeypatch.setenv(f"OPENSLOTS_{name}", value)


def use_twilio(monkeypatch: pytest.MonkeyPatch, server: TwilioServer) -> None:
    for name, value in {
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": TWILIO_FROM,
        "TWILIO_API_BASE_URL": server.base_url,
        "TWILIO_TIMEOUT_SECONDS": "2",
    }.items():
        monkeypatch.setenv(f"OPENSLOTS_{name}", value)
