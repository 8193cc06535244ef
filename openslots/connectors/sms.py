"""SMS senders behind one Protocol: a file outbox (the embedded default) and Twilio.

`FileSmsSender` writes one JSON file per message, named by its idempotency key, atomically (a
resend overwrites, never duplicates). `TwilioSmsSender` posts to the Messages resource of
Twilio's 2010-04-01 API with the official `twilio` package and classifies each answer:
sent, SendRefused (retry, maybe after Retry-After), SendRejected / RecipientOptedOut (dead),
SendOutcomeUnknown (the request went out and no usable answer came back).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
import urllib3.exceptions

from openslots.connectors.email import safe_file_name, write_atomically
from openslots.domain.rendering import ensure_sms_opt_out
from openslots.errors import (
    ConfigurationError,
    RecipientOptedOut,
    SendOutcomeUnknown,
    SendRefused,
    SendRejected,
)
from openslots.settings import Settings

__all__ = ["FileSmsSender", "OutgoingSms", "SmsSender", "TwilioSmsSender", "sms_sender"]


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    key: str
    to: str  # E.164
    body: str


class SmsSender(Protocol):
    """Sends one text or raises SendRefused / SendRejected / SendOutcomeUnknown."""

    def send(self, message: OutgoingSms) -> None: ...


class FileSmsSender:
    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, message: OutgoingSms) -> None:
        data = json.dumps(asdict(message), ensure_ascii=False, indent=2).encode()
        try:
            write_atomically(self.directory / f"{safe_file_name(message.key)}.json", data)
        except OSError as exc:
            raise SendRefused(f"file outbox not writable ({type(exc).__name__})") from None


# Twilio error codes (https://www.twilio.com/docs/api/errors) that no retry can cure.
UNSUBSCRIBED = 21610  # the recipient replied STOP to this sender
INVALID_NUMBERS = {
    21211: "invalid To number",
    21614: "To number cannot receive SMS",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _recording_http_client(timeout: float) -> Any:
    """The SDK's own HTTP client, keeping the last response: its exceptions drop the headers,
    and Retry-After is one of them. One per sender, and a sender belongs to one thread.

    Built here so that importing this module does not import the SDK (~0.15 s) for the
    file backend.
    """
    from twilio.http.http_client import TwilioHttpClient

    class RecordingHttpClient(TwilioHttpClient):
        last_response: Any = None

        def request(self, *args: Any, **kwargs: Any) -> Any:
            self.last_response = None
            response = super().request(*args, **kwargs)
            self.last_response = response
            return response

    return RecordingHttpClient(timeout=timeout)


def _retry_after(response: Any) -> float | None:
    """Retry-After in seconds (Twilio sends delta-seconds; an HTTP-date is ignored)."""
    if response is None or response.headers is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _before_the_request(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the request cannot have reached Twilio."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class TwilioSmsSender:
    """Texts through Twilio (or a Twilio-compatible API at OPENSLOTS_TWILIO_API_BASE_URL).

    No automatic retry anywhere: a POST that may have reached Twilio is never repeated here
    (requests' adapter does not retry a POST, and the SDK gets no `max_retries`).
    """

    def __init__(self, settings: Settings):
        missing = [
            name
            for name, value in (
                ("OPENSLOTS_TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                ("OPENSLOTS_TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"{' and '.join(missing)} required with OPENSLOTS_SMS_BACKEND=twilio"
            )
        if not (settings.twilio_from or settings.twilio_messaging_service_sid):
            raise ConfigurationError(
                "OPENSLOTS_TWILIO_FROM or OPENSLOTS_TWILIO_MESSAGING_SERVICE_SID is required "
                "with OPENSLOTS_SMS_BACKEND=twilio"
            )
        assert settings.twilio_auth_token is not None  # checked above; for mypy
        from twilio.base.exceptions import TwilioException
        from twilio.rest import Client

        self._twilio_error = TwilioException
        self._from = settings.twilio_from
        self._service = settings.twilio_messaging_service_sid
        self._base_url = settings.twilio_api_base_url
        self._http = _recording_http_client(settings.twilio_timeout_seconds)
        self._client = Client(
            username=settings.twilio_account_sid,
            password=settings.twilio_auth_token.get_secret_value(),
            account_sid=settings.twilio_account_sid,
            http_client=self._http,
        )
        # The SDK reads TWILIO_EDGE / TWILIO_REGION from os.environ, and either would rewrite
        # the host; Settings is the one source of configuration.
        self._client.edge = None
        self._client.region = None
        # The supported override of where the Messages API lives: every URL is built from the
        # Api domain's `base_url` (twilio.base.domain.Domain.absolute_url), so a
        # Twilio-compatible provider or a loopback test server is one attribute, and the SDK's
        # request building, auth and error parsing stay as they are.
        self._client.api.base_url = self._base_url

    def __repr__(self) -> str:
        return f"TwilioSmsSender(base_url={self._base_url!r})"

    def send(self, message: OutgoingSms) -> None:
        if not _E164.match(message.to):
            raise SendRejected("recipient number is not E.164")
        from twilio.base import values

        try:
            self._client.messages.create(
                to=message.to,
                body=ensure_sms_opt_out(message.body),
                from_=self._from or values.unset,
                messaging_service_sid=self._service or values.unset,
            )
        except self._twilio_error as exc:
            # The exception's text quotes Twilio's message, which can name the number: only
            # the status and the error code are kept.
            raise self._classify(getattr(exc, "status", None), getattr(exc, "code", None)) from None
        except requests.RequestException as exc:
            name = type(exc).__name__
            if _before_the_request(exc):
                raise SendRefused(f"cannot reach the SMS API ({name})", transient=True) from None
            raise SendOutcomeUnknown(f"no answer from the SMS API ({name})") from None
        except ValueError:
            # A 2xx whose body is not JSON: the message may well have been created.
            raise SendOutcomeUnknown("unreadable answer from the SMS API") from None

    def _classify(self, status: int | None, code: int | None) -> Exception:
        retry_after = _retry_after(self._http.last_response)
        reason = f"twilio HTTP {status}" + (f" code {code}" if code and code != status else "")
        if status == 429 or (status == 503 and retry_after is not None):
            return SendRefused(reason, transient=True, retry_after=retry_after)
        if status is None or status >= 500 or status < 400:
            return SendOutcomeUnknown(reason)
        if code == UNSUBSCRIBED:
            return RecipientOptedOut(f"{reason} (recipient unsubscribed)", code=code)
        if code in INVALID_NUMBERS:
            return SendRejected(f"{reason} ({INVALID_NUMBERS[code]})", code=code)
        if status in (401, 403, 404):
            # Credentials, account or base URL are wrong: nothing was sent, and the message
            # is fine once the operator fixes the configuration.
            return SendRefused(f"{reason} (check the Twilio settings)", transient=True)
        return SendRejected(reason, code=code)


def sms_sender(settings: Settings) -> SmsSender:
    """The configured SMS backend (one place decides which implementation runs)."""
    if settings.sms_backend == "twilio":
        return TwilioSmsSender(settings)
    return FileSmsSender(settings.resolved_outbox_dir() / "sms")
