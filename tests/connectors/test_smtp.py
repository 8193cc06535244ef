"""SmtpEmailSender against a real SMTP server on loopback (aiosmtpd), failing on cue.

Each test counts what the server received, so "exactly once" and "one login" are facts about
the wire, not about our own bookkeeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openslots.connectors.email import (
    FileEmailSender,
    OutgoingEmail,
    SmtpEmailSender,
    email_sender,
)
from openslots.errors import (
    ConfigurationError,
    SendOutcomeUnknown,
    SendRefused,
    SendRejected,
)
from openslots.settings import Settings
from tests.smtp_server import (
    DROP,
    SmtpSink,
    free_port,
    self_signed_certificate,
    server_tls_context,
)

USER = "relay-user"
PASSWORD = "correct-horse-battery-staple-4711"

# The plain-text sink asks for AUTH without TLS on purpose (loopback); aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
SENDER = "alerts@clinic.example"


def _address(n: int) -> str:
    return f"patient{n:03d}@example.test"


def _message(n: int, **changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "key": f"invite:{n}:0:email",
        "to": _address(n),
        "subject": f"Invitation {n}",
        "body": f"Dear patient {n},\n.a line that starts with a dot\nBye\n",
        "html": f"<p>Dear patient {n}</p>",
        "unsubscribe_url": f"http://127.0.0.1:8000/unsubscribe/token{n}",
    }
    fields.update(changes)
    return OutgoingEmail(**fields)


def _settings(sink: SmtpSink, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "email_backend": "smtp",
        "smtp_host": sink.host,
        "smtp_port": sink.port,
        "smtp_user": USER,
        "smtp_password": PASSWORD,
        "smtp_starttls": False,
        "email_from": SENDER,
        "smtp_timeout_seconds": 5,
    }
    values.update(changes)
    return Settings(**values)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(user=USER, password=PASSWORD) as running:
        yield running


def _send_all(sender: SmtpEmailSender, count: int) -> dict[int, BaseException]:
    errors: dict[int, BaseException] = {}
    for n in range(1, count + 1):
        try:
            sender.send(_message(n))
        except (SendRefused, SendOutcomeUnknown) as exc:
            errors[n] = exc
    return errors


def test_hundred_messages_arrive_once_over_one_login(sink: SmtpSink) -> None:
    sender = email_sender(_settings(sink))
    assert isinstance(sender, SmtpEmailSender)
    with sender:
        assert _send_all(sender, 100) == {}
    assert sorted(sink.recipients()) == [_address(n) for n in range(1, 101)]
    assert sink.logins == 1 and sink.connections == 1 and sender.logins == 1


def test_message_layout_headers_and_envelope(sink: SmtpSink) -> None:
    with SmtpEmailSender(_settings(sink)) as sender:
        sender.send(_message(7, to_name="Ana Ruiz-O'Neil", subject="Réunion – José"))
    [item] = sink.received
    assert item.mail_from == SENDER and item.rcpt_tos == [_address(7)]
    parsed = item.parsed()
    assert parsed["From"] == SENDER
    assert parsed["To"] == f"Ana Ruiz-O'Neil <{_address(7)}>"
    assert parsed["List-Unsubscribe"] == "<http://127.0.0.1:8000/unsubscribe/token7>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["X-Openslots-Key"] == "invite:7:0:email"
    assert parsed["Message-ID"] == "<invite_7_0_email@clinic.example>"
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(parsed["Subject"]))) == "Réunion – José"
    parts = {part.get_content_type(): part for part in parsed.walk()}
    text = parts["text/plain"].get_payload(decode=True).decode()
    assert text == "Dear patient 7,\n.a line that starts with a dot\nBye\n"  # dot un-stuffed
    assert parts["text/html"].get_payload(decode=True).decode() == "<p>Dear patient 7</p>"


def test_text_only_message_gets_an_escaped_html_part(sink: SmtpSink) -> None:
    with SmtpEmailSender(_settings(sink)) as sender:
        sender.send(_message(1, html=None, body="Dear <b>Ana</b> & co\nBye"))
    parts = {part.get_content_type(): part for part in sink.received[0].parsed().walk()}
    html = parts["text/html"].get_payload(decode=True).decode()
    assert html == "<div>Dear &lt;b&gt;Ana&lt;/b&gt; &amp; co<br>\nBye</div>"


def test_421_to_message_38_refuses_that_one_only(sink: SmtpSink) -> None:
    sink.fail_data(_address(38), "421 4.3.2 Service shutting down")
    with SmtpEmailSender(_settings(sink)) as sender:
        errors = _send_all(sender, 100)
    assert list(errors) == [38]
    assert type(errors[38]) is SendRefused and errors[38].transient
    assert "421" in str(errors[38])
    assert sorted(sink.recipients()) == [_address(n) for n in range(1, 101) if n != 38]
    assert sink.logins == 2  # 421 means the server closes: one new connection for message 39


def test_temporary_rcpt_refusal_keeps_the_connection(sink: SmtpSink) -> None:
    sink.fail_rcpt(_address(5), "450 4.2.1 Mailbox busy")
    with SmtpEmailSender(_settings(sink)) as sender:
        errors = _send_all(sender, 10)
    assert list(errors) == [5] and type(errors[5]) is SendRefused and errors[5].transient
    assert len(sink.received) == 9 and sink.logins == 1


def test_dropped_after_data_is_unknown_and_never_resent(sink: SmtpSink) -> None:
    sink.fail_data(_address(50), DROP)
    with SmtpEmailSender(_settings(sink)) as sender:
        errors = _send_all(sender, 100)
    assert list(errors) == [50] and isinstance(errors[50], SendOutcomeUnknown)
    # The server got message 50's data exactly once (and never answered it): no resend.
    assert [item.rcpt_tos for item in sink.dropped] == [[_address(50)]]
    assert sorted(sink.recipients()) == [_address(n) for n in range(1, 101) if n != 50]
    assert sink.logins == 2  # reconnected for 51


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "550 5.1.1 No such user here"), ("data", "554 5.7.1 Message rejected")],
)
def test_permanent_refusal_is_rejected(sink: SmtpSink, stage: str, reply: str) -> None:
    (sink.fail_rcpt if stage == "rcpt" else sink.fail_data)(_address(2), reply)
    with SmtpEmailSender(_settings(sink)) as sender:
        sender.send(_message(1))
        with pytest.raises(SendRejected) as caught:
            sender.send(_message(2))
        sender.send(_message(3))
    assert caught.value.code == int(reply[:3])
    assert _address(2) not in str(
        caught.value
    )  # the server's text (it quotes the address) is not kept
    assert sink.recipients() == [_address(1), _address(3)] and sink.logins == 1


def test_idle_connection_closed_by_the_relay_is_reopened_before_the_next_message() -> None:
    with SmtpSink(user=USER, password=PASSWORD, idle_timeout=0.3) as sink:
        with SmtpEmailSender(_settings(sink)) as sender:
            sender.send(_message(1))
            time.sleep(0.6)
            sender.send(_message(2))
        assert sink.recipients() == [_address(1), _address(2)]
        assert sink.logins == 2


def test_connection_refused_is_a_transient_refusal() -> None:
    settings = Settings(
        email_backend="smtp", smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False
    )
    with pytest.raises(SendRefused) as caught:
        SmtpEmailSender(settings).send(_message(1))
    assert caught.value.transient and "ConnectionRefusedError" in caught.value.reason


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


def test_starttls_with_a_self_signed_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with SmtpSink(
        user=USER, password=PASSWORD, starttls_context=server_tls_context(cert, key)
    ) as sink:
        settings = _settings(sink, smtp_starttls=True, smtp_ca_file=cert)
        with SmtpEmailSender(settings) as sender:
            assert _send_all(sender, 3) == {}
        assert len(sink.received) == 3 and sink.logins == 1
        # Without trusting that certificate the handshake fails before anything is sent.
        untrusting = SmtpEmailSender(_settings(sink, smtp_starttls=True))
        with pytest.raises(SendRefused) as caught:
            untrusting.send(_message(9))
        assert caught.value.transient and "TLS" in caught.value.reason
        assert len(sink.received) == 3


def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with SmtpSink(
        user=USER, password=PASSWORD, implicit_tls_context=server_tls_context(cert, key)
    ) as sink:
        settings = _settings(sink, smtp_ssl=True, smtp_ca_file=cert)
        with SmtpEmailSender(settings) as sender:
            sender.send(_message(1))
        assert sink.recipients() == [_address(1)]


def test_password_never_shown(sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _settings(sink)
    with SmtpEmailSender(settings) as sender:
        sender.send(_message(1))
        shown = [repr(settings), str(settings), repr(sender), settings.model_dump_json()]
    wrong = _settings(sink, smtp_password="wrong-" + PASSWORD)
    with pytest.raises(SendRefused) as caught:
        SmtpEmailSender(wrong).send(_message(2))
    assert caught.value.transient and "535" in caught.value.reason
    shown += [str(caught.value), repr(caught.value), repr(wrong), caplog.text]
    assert not [text for text in shown if PASSWORD in text]
    assert sink.failed_logins >= 1 and len(sink.received) == 1  # smtplib tries PLAIN, LOGIN


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Hello\r\nBcc: victim@example.test"},
        {"subject": "Hello\nX-Evil: 1"},
        {"to_name": "Ana\rBcc: victim@example.test"},
        {"to": "patient@example.test\r\nBcc: victim@example.test"},
        {"to": "Ana <patient@example.test>"},
        {"unsubscribe_url": "http://x/u\u2028Bcc: victim@example.test"},
    ],
)
def test_header_injection_is_rejected_before_connecting(
    sink: SmtpSink, changes: dict[str, str]
) -> None:
    sender = SmtpEmailSender(_settings(sink))
    with pytest.raises(SendRejected) as caught:
        sender.send(_message(1, **changes))
    assert "victim" not in str(caught.value) and "patient" not in str(caught.value)
    assert sender.logins == 0 and sink.connections == 0 and sink.received == []


def test_missing_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="OPENSLOTS_SMTP_HOST"):
        email_sender(Settings(email_backend="smtp"))
    with pytest.raises(ConfigurationError, match="OPENSLOTS_SMTP_PASSWORD"):
        email_sender(Settings(email_backend="smtp", smtp_host="relay", smtp_user="u"))


def test_one_sender_per_thread(sink: SmtpSink) -> None:
    import threading

    sender = SmtpEmailSender(_settings(sink))
    sender.send(_message(1))
    failures: list[BaseException] = []

    def other() -> None:
        try:
            sender.send(_message(2))
        except RuntimeError as exc:
            failures.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    sender.close()
    assert len(failures) == 1 and sink.recipients() == [_address(1)]


LONG_URL = "http://127.0.0.1:8000/unsubscribe/" + "dW5zdWJzY3JpYmUuMS4xODI3NjM5MD" * 5


def _raw_header(raw: bytes, name: bytes) -> bytes:
    """The header's line exactly as sent: no folding, no RFC 2047 encoded-word."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n")[0].split(b"\n")
    [index] = [n for n, line in enumerate(head) if line.startswith(name + b":")]
    assert not head[index + 1].startswith((b" ", b"\t")), "the header was folded"
    return head[index]


def test_a_real_length_unsubscribe_url_is_neither_folded_nor_encoded(
    sink: SmtpSink, tmp_path: Path
) -> None:
    """A signed token makes the URL ~150+ characters: mail clients only offer one-click
    unsubscribe for a List-Unsubscribe they can read as `<url>` (RFC 8058)."""
    import dataclasses

    message = dataclasses.replace(_message(8), unsubscribe_url=LONG_URL)
    with SmtpEmailSender(_settings(sink)) as sender:
        sender.send(message)
    [item] = sink.received
    expected = b"List-Unsubscribe: <" + LONG_URL.encode() + b">"
    assert _raw_header(item.content, b"List-Unsubscribe") == expected

    FileEmailSender(tmp_path, SENDER).send(message)
    written = (tmp_path / "invite_8_0_email.eml").read_bytes()
    assert _raw_header(written, b"List-Unsubscribe") == expected


def test_built_message_is_crlf_dot_safe_and_a_long_accented_subject_survives(
    sink: SmtpSink,
) -> None:
    """mime_bytes writes the wire form itself: CRLF only, no line a relay could take for the
    end of data, an accented subject longer than one encoded-word read back whole."""
    subject = "Réunion – José Müller-Łukasz, rendez-vous confirmé " * 3
    body = ".starts with a dot\n..two dots\nÉté\n"
    with SmtpEmailSender(_settings(sink)) as sender:
        built = sender.build(_message(9, subject=subject, body=body))
        sender.send(_message(9, subject=subject, body=body))
    assert built.endswith(b"\r\n.\r\n") and b"\n" not in built.replace(b"\r\n", b"")
    assert not [line for line in built.split(b"\r\n")[:-2] if line.startswith(b".")]
    from email.header import decode_header, make_header

    parsed = sink.received[0].parsed()
    assert str(make_header(decode_header(parsed["Subject"]))) == subject
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["text/plain"].get_payload(decode=True).decode() == body


def test_an_abandoned_transaction_delivers_nothing_and_the_next_message_goes(
    sink: SmtpSink,
) -> None:
    """begin() (MAIL, RCPT, DATA) then abandon(): the relay never saw the data, so it has no
    message; the next message opens a new connection. begin() + complete() is send()."""
    with SmtpEmailSender(_settings(sink)) as sender:
        sender.begin(_message(1))
        sender.abandon()
        sender.complete(sender.begin(_message(2)))
    assert sink.recipients() == [_address(2)]
    assert sink.logins == 2
