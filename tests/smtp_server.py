"""A real SMTP server on loopback (aiosmtpd) that records what it received and fails on cue.

`SmtpSink` runs aiosmtpd's `Controller` on a free port. Failures are chosen per recipient
address, at RCPT or after the DATA was received: a reply code ("421 ...", "450 ...",
"550 ...") or `DROP` (close the connection without answering the data, as a relay that
crashes after queueing would). It counts what arrived, the AUTH logins and the connections,
so a test can prove "each message exactly once, one login". `delay` makes it answer each
message's data that many seconds late (a relay's latency: the dispatch benchmark, and the
tests that must kill a worker mid-batch); `keep_content=False` keeps only the envelope and the
Message-ID (a benchmark's ten thousand messages). Also makes the self-signed certificate for
the TLS tests.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

DROP = "DROP"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def parsed(self) -> Message:
        return message_from_bytes(self.content)


@dataclass
class _Handler:
    rcpt_rules: dict[str, str] = field(default_factory=dict)
    data_rules: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    dropped: list[Received] = field(default_factory=list)  # data received, never answered
    sessions: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds before answering each message's data
    keep_content: bool = True  # False: headers up to the Message-ID only

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        rule = self.rcpt_rules.get(address)
        if rule is not None:
            return rule
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.lock:
            self.sessions.add(id(session))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content or b""
        if not self.keep_content:
            content = _message_id_header(content)
        item = Received(str(envelope.mail_from), list(envelope.rcpt_tos), content)
        rule = next((self.data_rules[r] for r in envelope.rcpt_tos if r in self.data_rules), None)
        if rule == DROP:
            with self.lock:
                self.dropped.append(item)
            assert server.transport is not None
            server.transport.abort()  # no reply to the data, ever
            return "250 never sent"
        if rule is not None:
            return rule
        # Queued first, answered after the latency: a client killed meanwhile leaves a message
        # the relay has and the client never heard about (its outbox row says `unknown`).
        with self.lock:
            self.received.append(item)
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


def _message_id_header(content: bytes) -> bytes:
    """Just the Message-ID header line of a message (or nothing)."""
    head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(b"message-id:"):
            return line + b"\r\n\r\n"
    return b""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpSink:
    """A running aiosmtpd server; use as a context manager."""

    def __init__(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        idle_timeout: float = 300,
        delay: float = 0.0,
        keep_content: bool = True,
    ):
        self.handler = _Handler(delay=delay, keep_content=keep_content)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.logins = 0
        self.failed_logins = 0
        self._credentials = (user, password)
        kwargs: dict[str, Any] = {"timeout": idle_timeout}
        if user is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                # Plain AUTH on loopback is what a test without TLS needs; TLS tests keep
                # aiosmtpd's default (AUTH only after STARTTLS).
                auth_require_tls=starttls_context is not None,
            )
        if starttls_context is not None:
            kwargs.update(tls_context=starttls_context, require_starttls=True)
        self.controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=implicit_tls_context,
            server_hostname="sink.openslots.test",
            **kwargs,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        user, password = self._credentials
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == user
            and data.password.decode() == password
        )
        with self.handler.lock:
            if ok:
                self.logins += 1
            else:
                self.failed_logins += 1
        # handled=False: aiosmtpd itself answers (235 or 535), as a real relay would.
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    # -- what the tests read and set ------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def dropped(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.dropped)

    @property
    def connections(self) -> int:
        """Distinct SMTP sessions that got as far as MAIL FROM."""
        with self.handler.lock:
            return len(self.handler.sessions)

    def fail_rcpt(self, address: str, reply: str) -> None:
        self.handler.rcpt_rules[address] = reply

    def fail_data(self, address: str, reply: str) -> None:
        """`reply` after the data of a message to `address`, or DROP the connection."""
        self.handler.data_rules[address] = reply

    def recipients(self) -> list[str]:
        return [rcpt for item in self.received for rcpt in item.rcpt_tos]

    def message_ids(self) -> list[str]:
        """The Message-ID of every message received (one per message; the key names it)."""
        return [str(item.parsed()["Message-ID"]) for item in self.received]

    def count(self) -> int:
        with self.handler.lock:
            return len(self.handler.received)

    def clear(self) -> None:
        """Forget what was received (a benchmark's next round on the same server)."""
        with self.handler.lock:
            self.handler.received.clear()
            self.handler.dropped.clear()
            self.handler.sessions.clear()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openslots test relay")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "relay-cert.pem"
    key_path = directory / "relay-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
