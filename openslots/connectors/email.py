"""Email senders behind one Protocol: a file outbox (the embedded default) and SMTP (yagmail).

`FileEmailSender` writes one .eml per message, named by its idempotency key and written
atomically, so a resend after a crash overwrites the same file instead of producing a second
message. `SmtpEmailSender` keeps one authenticated connection per worker thread and says
honestly what became of each message: SendRefused (nothing went out; retry), SendRejected
(nothing went out and never will), SendOutcomeUnknown (the data went out, no reply came back).
"""

from __future__ import annotations

import base64
import html as html_lib
import os
import re
import secrets
import smtplib
import ssl
import tempfile
import threading
from dataclasses import dataclass
from email import policy as email_policy
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

import yagmail

from openslots.errors import ConfigurationError, SendOutcomeUnknown, SendRefused, SendRejected
from openslots.settings import Settings

__all__ = [
    "EmailSender",
    "FileEmailSender",
    "OutgoingEmail",
    "SmtpEmailSender",
    "email_sender",
]


# Headers are never folded or RFC 2047-encoded for length: a List-Unsubscribe URL (a signed
# token is ~150 characters) must reach mail clients as `<https://...>` (RFC 8058).
UNFOLDED = email_policy.default.clone(max_line_length=998)


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One email. `body` is the text part; `html`, when given, the (already escaped) HTML part."""

    key: str  # the outbox idempotency key
    to: str
    subject: str
    body: str
    html: str | None = None
    unsubscribe_url: str | None = None  # List-Unsubscribe (RFC 8058 one-click)
    to_name: str | None = None  # display name in the To header


class EmailSender(Protocol):
    """Sends one email or raises SendRefused / SendRejected / SendOutcomeUnknown."""

    def send(self, message: OutgoingEmail) -> None: ...


def safe_file_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileEmailSender:
    """Writes RFC 5322 messages to `<outbox>/email/<key>.eml` (open them with any mail client)."""

    def __init__(self, directory: Path, sender: str):
        self.directory = directory
        self.sender = sender

    def send(self, message: OutgoingEmail) -> None:
        email = EmailMessage(policy=UNFOLDED)
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(idstring=safe_file_name(message.key))
        email["X-Openslots-Key"] = message.key
        if message.unsubscribe_url:
            email["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(message.body)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        try:
            write_atomically(self.directory / f"{safe_file_name(message.key)}.eml", bytes(email))
        except OSError as exc:
            raise SendRefused(f"file outbox not writable ({type(exc).__name__})") from None


# Every character str.splitlines() breaks on, and NUL: any of them in a header value could start
# a new header (or end the headers) somewhere between us and the recipient.
_LINE_BREAK = re.compile("[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


def check_header_values(message: OutgoingEmail) -> None:
    """SendRejected (naming the field, never its value) when a value could inject a header."""
    fields = {
        "key": message.key,
        "to": message.to,
        "to_name": message.to_name or "",
        "subject": message.subject,
        "unsubscribe_url": message.unsubscribe_url or "",
    }
    for field, value in fields.items():
        if _LINE_BREAK.search(value):
            raise SendRejected(f"line break in the {field} header value (header injection)")
    if parseaddr(message.to)[1] != message.to or not _ADDRESS.match(message.to):
        raise SendRejected("recipient address is not a plain ASCII addr-spec")
    if message.unsubscribe_url and (
        ">" in message.unsubscribe_url or " " in message.unsubscribe_url
    ):
        raise SendRejected("unsubscribe_url cannot go inside <> (List-Unsubscribe)")


def _extra_headers(message: OutgoingEmail) -> list[tuple[str, str]]:
    headers = [("X-Openslots-Key", message.key)]
    if message.unsubscribe_url:
        headers.append(("List-Unsubscribe", f"<{message.unsubscribe_url}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _base64_lines(text: str) -> bytes:
    """UTF-8, base64 in lines of 76 characters, CRLF-terminated (RFC 2045 section 6.8)."""
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")


def _subject(subject: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded-words (folded between them)."""
    if subject.isascii():
        return subject
    return Header(subject, "utf-8").encode(linesep="\r\n")


def mime_bytes(
    *,
    sender: str,
    to: str,
    subject: str,
    message_id: str,
    headers: list[tuple[str, str]],
    text: str,
    html: str,
) -> bytes:
    """A multipart/alternative message (text, then HTML, both UTF-8 in base64) as it goes on
    the wire after DATA: CRLF line ends and the final CRLF.CRLF.

    Written directly rather than through `email` (yagmail's prepare_message, then flattening):
    that took ~1.5 ms a message, a quarter of a dispatched message's CPU. No line can start with
    a dot (headers have names, base64 has no dots, boundaries start with dashes), so nothing
    needs dot-stuffing. Header values were checked by check_header_values; none is folded
    except an encoded Subject, between its encoded-words.
    """
    # "=_" cannot occur in base64 (nor in quoted-printable): the parts cannot contain it.
    boundary = f"=_openslots_{secrets.token_hex(12)}"
    head = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {_subject(subject)}",
        f"Date: {formatdate()}",
        f"Message-ID: {message_id}",
        *(f"{name}: {value}" for name, value in headers),
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        "",
    ]
    middle = [
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        "",
    ]
    return b"".join(
        (
            "\r\n".join(head).encode("utf-8"),
            _base64_lines(text),
            "\r\n".join(middle).encode("ascii"),
            _base64_lines(html),
            f"--{boundary}--\r\n.\r\n".encode("ascii"),
        )
    )


_TLS_CONTEXTS: dict[tuple[str | None, int | None], ssl.SSLContext] = {}


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """One verifying TLS context per CA file (and its version on disk), shared by every
    sending thread: making one reads the system's or the file's certificates (~27 ms, 16
    threads made a dispatch run wait ~0.4 s). Sharing an SSLContext between threads is safe."""
    key = (str(ca_file), ca_file.stat().st_mtime_ns) if ca_file else (None, None)
    context = _TLS_CONTEXTS.get(key)
    if context is None:
        context = _TLS_CONTEXTS[key] = ssl.create_default_context(
            cafile=str(ca_file) if ca_file else None
        )
    return context


class SmtpEmailSender:
    """One SMTP connection through yagmail, reused across messages. One object per thread.

    yagmail authenticates (`login()`: connect, STARTTLS or implicit TLS, AUTH with `password=`,
    never its keyring or a prompt); each message is built by `mime_bytes` (multipart text and
    HTML, encoded headers, Date, Message-ID). We then speak MAIL/RCPT/DATA on the connection
    yagmail opened, one step at a time, because only then do we know how far a message got:
    yagmail's `send()` logs in again for every message and, when the connection drops after
    DATA, logs in again and sends the same message a second time (0.16).

    The connection is opened on the first message and again only before a later message when
    it was found closed; a message is never sent twice by this class. An idle connection the
    relay closed is noticed at MAIL FROM, before any of the message left: that message then
    goes out on one fresh connection, which is not a resend (the relay never saw it).
    """

    def __init__(self, settings: Settings):
        if not settings.smtp_host:
            raise ConfigurationError(
                "OPENSLOTS_SMTP_HOST is required with OPENSLOTS_EMAIL_BACKEND=smtp"
            )
        if settings.smtp_user and settings.smtp_password is None:
            raise ConfigurationError(
                "OPENSLOTS_SMTP_PASSWORD is required when OPENSLOTS_SMTP_USER is set"
            )
        if _LINE_BREAK.search(settings.email_from) or not _ADDRESS.match(settings.email_from):
            raise ConfigurationError("OPENSLOTS_EMAIL_FROM is not a plain email address")
        self._from = settings.email_from
        self._message_id_domain = settings.email_from.rpartition("@")[2]
        self._host = settings.smtp_host
        self._port = settings.resolved_smtp_port()
        self._owner: int | None = None
        tls = settings.smtp_ssl or settings.resolved_smtp_starttls()
        context = _tls_context(settings.smtp_ca_file) if tls else None
        # yagmail passes these keyword arguments to smtplib.SMTP / SMTP_SSL; SMTP has no
        # `context`, so it is only given for implicit TLS (STARTTLS takes it through
        # smtp_starttls, which yagmail hands to starttls()).
        connection_kwargs: dict[str, Any] = {"timeout": settings.smtp_timeout_seconds}
        if settings.smtp_ssl:
            connection_kwargs["context"] = context
        login = settings.smtp_user or ""
        password = settings.smtp_password
        self._yag = yagmail.SMTP(
            # The {address: alias} form, because 0.16 appends "@gmail.com" to a bare user name
            # ("apikey" would log in as "apikey@gmail.com").
            user={login: login},
            password=password.get_secret_value() if password is not None else None,
            host=settings.smtp_host,
            port=self._port,
            smtp_starttls={"context": context} if settings.resolved_smtp_starttls() else False,
            smtp_ssl=settings.smtp_ssl,
            smtp_skip_login=not login,
            soft_email_validation=False,  # we check addresses ourselves, with a PHI-free reason
            **connection_kwargs,
        )
        self.logins = 0  # connections opened (and authenticated): one per batch when all is well

    def __repr__(self) -> str:
        return f"SmtpEmailSender(host={self._host!r}, port={self._port})"

    # -- building -------------------------------------------------------------------------

    def build(self, message: OutgoingEmail) -> bytes:
        """The message as it goes on the wire after DATA (CRLF, dot-stuffed, final dot)."""
        check_header_values(message)
        html = message.html
        if html is None:
            html = "<div>" + html_lib.escape(message.body).replace("\n", "<br>\n") + "</div>"
        return mime_bytes(
            sender=self._from,
            to=formataddr((message.to_name, message.to)) if message.to_name else message.to,
            subject=message.subject,
            message_id=f"<{safe_file_name(message.key)}@{self._message_id_domain}>",
            headers=_extra_headers(message),
            text=message.body,
            html=html,
        )

    # -- the connection -------------------------------------------------------------------

    def _is_open(self) -> bool:
        return getattr(self._yag.smtp, "sock", None) is not None

    def _drop(self) -> None:
        try:
            if self._yag.smtp is not None:
                self._yag.smtp.close()
        except Exception:  # closing a broken connection cannot fail a message
            pass

    def _open(self) -> None:
        self._drop()
        try:
            self._yag.login()
            self._yag.smtp.ehlo_or_helo_if_needed()  # yagmail skips EHLO without TLS or AUTH
        except smtplib.SMTPAuthenticationError as exc:
            self._drop()
            raise SendRefused(f"SMTP AUTH refused ({exc.smtp_code})", transient=True) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._drop()
            raise SendRefused(
                f"TLS with the relay failed ({type(exc).__name__})", transient=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise SendRefused(
                f"cannot reach the SMTP relay ({type(exc).__name__})", transient=True
            ) from None
        self.logins += 1

    def close(self) -> None:
        """QUIT politely; the next message opens a new connection."""
        try:
            if self._is_open():
                self._yag.smtp.quit()
        except Exception:
            pass
        finally:
            self._drop()

    def __enter__(self) -> SmtpEmailSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------

    def send(self, message: OutgoingEmail) -> None:
        self.complete(self.begin(message))

    def begin(self, message: OutgoingEmail) -> bytes:
        """MAIL, RCPT and DATA for `message`, up to the relay's 354: nothing of the message has
        left yet, and a relay that loses the connection now discards it. Returns what
        `complete` hands over; or `abandon` it. Raises SendRefused / SendRejected as `send`.

        The dispatcher records "this message is being handed to a sender" meanwhile: only the
        data needs that record to be committed first.
        """
        owner = threading.get_ident()
        if self._owner is None:
            self._owner = owner
        elif self._owner != owner:
            raise RuntimeError("an SmtpEmailSender belongs to one thread: make one per thread")
        data = self.build(message)
        reused = self._is_open()
        if not reused:
            self._open()
        try:
            self._envelope(message.to, first_step_may_find_closed=reused)
        except _FoundClosed:
            self._open()
            self._envelope(message.to, first_step_may_find_closed=False)
        return data

    def abandon(self) -> None:
        """After `begin`, when the message must not go: close the connection before any of the
        data (after 354 a RSET would be read as data); the next message opens a new one."""
        self._drop()

    def _reply(self, code: int, step: str) -> None:
        """Raise for anything but a 2xx reply; the server's text is never quoted (PHI)."""
        if 200 <= code < 300:
            return
        reason = f"SMTP {code} to {step}"
        if code == 421:  # the server is closing the connection
            self._drop()
            raise SendRefused(reason, transient=True)
        try:
            self._yag.smtp.rset()  # keep the connection usable for the next message
        except (smtplib.SMTPException, OSError):
            self._drop()
        if 500 <= code < 600:
            raise SendRejected(reason, code=code)
        raise SendRefused(reason, transient=400 <= code < 500)

    def _envelope(self, to: str, *, first_step_may_find_closed: bool) -> None:
        smtp = self._yag.smtp
        step = "MAIL"
        try:
            # The commands themselves: smtplib's mail()/rcpt() parse each address again
            # (email.utils), and both were checked as plain addr-specs already.
            smtp.putcmd("mail", f"FROM:<{self._from}>")
            code, _ = smtp.getreply()
            if code == 421 and first_step_may_find_closed:
                # An idle-timeout notice from the relay, read only now: the same as closed.
                self._drop()
                raise _FoundClosed
            self._reply(code, step)
            step = "RCPT"
            smtp.putcmd("rcpt", f"TO:<{to}>")
            code, _ = smtp.getreply()
            self._reply(code, step)
            step = "DATA"
            smtp.putcmd("data")
            code, _ = smtp.getreply()
            if code != 354:
                if code >= 400:
                    self._reply(code, step)
                self._drop()  # a server that skips 354 is not one to send our data to
                raise SendRefused(f"SMTP {code} to DATA (354 expected)", transient=True)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            if step == "MAIL" and first_step_may_find_closed:
                raise _FoundClosed from None
            raise SendRefused(
                f"connection lost at {step} ({type(exc).__name__})", transient=True
            ) from None

    def complete(self, data: bytes) -> None:
        """Hand over the data `begin` returned and read the relay's answer."""
        smtp = self._yag.smtp
        try:
            # If sending fails part-way, the end-of-data dot never left: RFC 5321 §4.1.1.4
            # has the server discard an unfinished message, so nothing was delivered.
            smtp.send(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            raise SendRefused(
                f"connection lost at the data ({type(exc).__name__})", transient=True
            ) from None
        try:
            code, _ = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # The whole message went out and no reply came: the relay may have taken it.
            self._drop()
            raise SendOutcomeUnknown(
                f"no reply after the data was sent ({type(exc).__name__})"
            ) from None
        self._reply(code, "the end of data")


class _FoundClosed(Exception):
    """The reused connection was closed by the relay before this message's MAIL FROM."""


def email_sender(settings: Settings) -> EmailSender:
    """The configured email backend (one place decides which implementation runs).

    Call it once per sending thread: an SMTP sender holds one connection.
    """
    if settings.email_backend == "smtp":
        return SmtpEmailSender(settings)
    return FileEmailSender(settings.resolved_outbox_dir() / "email", settings.email_from)
