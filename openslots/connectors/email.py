"""Email senders behind one Protocol; the file outbox is the embedded default.

SMTP (yagmail) arrives with the dispatch issue; `FileEmailSender` writes one .eml per message,
named by its idempotency key and written atomically, so a resend after a crash overwrites the
same file instead of producing a second message.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from openslots.errors import SendRefused
from openslots.settings import Settings


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    key: str  # the outbox idempotency key
    to: str
    subject: str
    body: str


class EmailSender(Protocol):
    """Sends one email or raises SendRefused / SendOutcomeUnknown."""

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
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(idstring=safe_file_name(message.key))
        email["X-Openslots-Key"] = message.key
        email.set_content(message.body)
        try:
            write_atomically(self.directory / f"{safe_file_name(message.key)}.eml", bytes(email))
        except OSError as exc:
            raise SendRefused(f"file outbox not writable ({type(exc).__name__})") from None


def email_sender(settings: Settings) -> EmailSender:
    """The configured email backend (one place decides which implementation runs)."""
    return FileEmailSender(settings.resolved_outbox_dir() / "email", settings.email_from)
