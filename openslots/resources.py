"""Wiring in one place: the engine, the senders and the clock, built from Settings.

Tasks, the API and the CLI ask for `resources()` instead of building connectors themselves, so
which implementation runs (SQLite or PostgreSQL, file outbox or SMTP, the real or a frozen
clock) is decided here and nowhere else (dagster's `resources/` does the same).

Example:
    >>> res = resources(Settings(database_url="sqlite://"))
    >>> res.engine.dialect.name
    'sqlite'
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from openslots.connectors.database.engine import get_engine, require_current_schema
from openslots.connectors.database.secrets import TOKEN_KEY, get_or_create_secret
from openslots.domain import clock as _clock
from openslots.settings import Settings, get_settings

if TYPE_CHECKING:
    # The senders (yagmail, requests) are imported when a sender is asked for: a command that
    # only reads the database must not pay for them.
    from openslots.connectors.email import EmailSender
    from openslots.connectors.sms import SmsSender


@dataclass(frozen=True)
class Resources:
    """What a step needs from the outside world, built lazily from one Settings object."""

    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def engine(self) -> Engine:
        """The database engine (one per URL per process, pooled)."""
        return get_engine(self.settings)

    @cached_property
    def email(self) -> EmailSender:
        """The configured email backend."""
        from openslots.connectors.email import email_sender

        return email_sender(self.settings)

    @cached_property
    def sms(self) -> SmsSender:
        """The configured SMS backend."""
        from openslots.connectors.sms import sms_sender

        return sms_sender(self.settings)

    def new_senders(self) -> tuple[EmailSender, SmsSender]:
        """A fresh (email, SMS) sender pair for one sending thread: an SMTP sender holds one
        connection and belongs to one thread, so parallel dispatch asks for one pair each."""
        from openslots.connectors.email import email_sender
        from openslots.connectors.sms import sms_sender

        return email_sender(self.settings), sms_sender(self.settings)

    @property
    def clock(self) -> _clock.Clock:
        """The process's clock (a test may have frozen it)."""
        return _clock.current()

    def now(self) -> dt.datetime:
        return self.clock.now()

    def secret_key(self) -> str:
        """The key that signs every token: OPENSLOTS_SECRET_KEY, else one generated on first
        use and stored in the database, so every process of the installation agrees."""
        if self.settings.secret_key is not None:
            return self.settings.secret_key.get_secret_value()
        with self.engine.begin() as conn:
            key, generated = get_or_create_secret(conn, TOKEN_KEY)
        if generated:
            logging.getLogger("openslots").warning(
                "OPENSLOTS_SECRET_KEY is unset: generated a signing key and stored it in the "
                "database; set OPENSLOTS_SECRET_KEY to manage it yourself"
            )
        return key

    def require_current_schema(self) -> Engine:
        """The engine, once the schema is known to be at this code's revision."""
        require_current_schema(self.settings)
        return self.engine


def resources(settings: Settings | None = None) -> Resources:
    """Resources for `settings` (read from the environment when not given)."""
    return Resources(settings or get_settings())
