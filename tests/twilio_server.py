"""A loopback HTTP server that speaks the Messages resource of Twilio's 2010-04-01 API.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded To / From /
MessagingServiceSid / Body, HTTP basic auth (account SID, auth token); answers 201 with the
message's JSON (sid, status "queued"...), or Twilio's error JSON
`{"code": ..., "message": ..., "more_info": ..., "status": ...}`. What it answers is chosen per
recipient number (`behave(to, ...)`), so one test can mix outcomes:

    ok        201 and the message is recorded
    429       429 Too Many Requests with Retry-After (nothing recorded)
    503       503 with Retry-After (nothing recorded; set `state.retry_after = ""` for none)
    500       500 after recording the message (the provider may have it: that is the point)
    21610     400, the recipient unsubscribed
    21211     400, invalid To number
    21614     400, not a mobile number
    slow      records the message, then answers only after `slow_seconds`
    drop      records the message and closes the connection without an answer

Real HTTP through the real SDK: set OPENSLOTS_TWILIO_API_BASE_URL to `server.base_url`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-auth-token-0123456789abcdef"

_ERRORS = {
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "21614": (400, 21614, "'To' number is not a valid mobile number"),
}


@dataclass
class ReceivedSms:
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    sid: str


@dataclass
class _State:
    behaviours: dict[str, str] = field(default_factory=dict)
    received: list[ReceivedSms] = field(default_factory=list)
    requests: int = 0
    retry_after: str = "7"
    slow_seconds: float = 1.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as Twilio does

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the request line is harmless, but tests read their own output."""

    def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str, **headers: str) -> None:
        self._answer(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            headers,
        )

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        with state.lock:
            state.requests += 1
        parts = self.path.split("/")
        # ['', '2010-04-01', 'Accounts', sid, 'Messages.json']
        if (
            len(parts) != 5
            or parts[1:3] != ["2010-04-01", "Accounts"]
            or parts[4] != ("Messages.json")
        ):
            self._error(404, 20404, "The requested resource was not found")
            return
        account = parts[3]
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if account != ACCOUNT_SID or self.headers.get("Authorization") != expected:
            self._error(401, 20003, "Authentication Error - invalid username")
            return
        to = form.get("To", "")
        if (
            not form.get("Body")
            or not to
            or not (form.get("From") or form.get("MessagingServiceSid"))
        ):
            self._error(400, 21602, "Message body, To and From are required")
            return
        behaviour = state.behaviours.get(to, "ok")
        if behaviour in ("429", "503"):
            status = int(behaviour)
            self._error(
                status,
                20429 if status == 429 else 20503,
                "Too many requests",
                **({"Retry-After": state.retry_after} if state.retry_after else {}),
            )
            return
        if behaviour in _ERRORS:
            self._error(*_ERRORS[behaviour])
            return
        message = ReceivedSms(
            account_sid=account,
            to=to,
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
            sid="SM" + secrets.token_hex(16),
        )
        with state.lock:
            state.received.append(message)
        if behaviour == "500":
            self._error(500, 20500, "Internal Server Error")
            return
        if behaviour == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if behaviour == "slow":
            time.sleep(state.slow_seconds)
        # The client may have given up waiting (the `slow` case).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(
                201,
                {
                    "sid": message.sid,
                    "account_sid": account,
                    "to": to,
                    "from": message.from_,
                    "messaging_service_sid": message.messaging_service_sid,
                    "body": message.body,
                    "status": "queued",
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "uri": f"/2010-04-01/Accounts/{account}/Messages/{message.sid}.json",
                },
                {},
            )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: _State


class TwilioServer:
    """A running fake Messages API on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def state(self) -> _State:
        return self._server.state

    def behave(self, to: str, behaviour: str) -> None:
        self.state.behaviours[to] = behaviour

    @property
    def received(self) -> list[ReceivedSms]:
        with self.state.lock:
            return list(self.state.received)

    @property
    def requests(self) -> int:
        with self.state.lock:
            return self.state.requests

    def __enter__(self) -> TwilioServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
