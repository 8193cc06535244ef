"""SMS senders behind one Protocol; the file outbox is the embedded default.

The HTTP provider arrives with the dispatch issue. `FileSmsSender` writes one JSON file per
message, named by its idempotency key, atomically (a resend overwrites, never duplicates).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from openslots.connectors.email import safe_file_name, write_atomically
from openslots.errors import SendRefused
from openslots.settings import Settings


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    key: str
    to: str  # E.164
    body: str


class SmsSender(Protocol):
    """Sends one text or raises SendRefused / SendOutcomeUnknown."""

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


def sms_sender(settings: Settings) -> SmsSender:
    return FileSmsSender(settings.resolved_outbox_dir() / "sms")
