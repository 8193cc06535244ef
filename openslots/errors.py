"""Project exceptions; each carries structured, PHI-free data (lines, fields, rules, counts).

Exception tree::

    OpenslotsError                 base; `transient` says whether a retry may help
    ├── ConfigurationError         bad settings or an unknown provider/location (terminal)
    ├── RosterFileError            the file as a whole is unusable: missing column, bad encoding,
    │                              malformed CSV (terminal); carries `line` and `column` when known
    ├── RosterRejectedError        --strict import with rejected rows: nothing written (terminal)
    ├── SendRefused                nothing went out and trying again later may work (outbox
    │   │                          `failed`): a 4xx reply, a refused connection, a TLS failure,
    │   │                          Twilio 429/503; `retry_after` (seconds) when the server said
    │   │                          when, `transient` when the refusal was temporary
    │   └── SendRejected           nothing went out and it never will (outbox `dead`): a 5xx
    │       │                      reply to MAIL/RCPT/DATA, an invalid number (Twilio 21211,
    │       │                      21614), a header injection; carries `code` when the server
    │       │                      gave one
    │       └── RecipientOptedOut  the provider says the recipient unsubscribed (Twilio 21610):
    │                              the dispatcher opts the contact out and marks the message dead
    ├── SendOutcomeUnknown         the message may or may not have gone out (connection lost
    │                              after the data was sent, SMS provider 5xx or timeout after
    │                              the request went out): `unknown`, never retried blindly
    ├── InvalidToken               a link's token is refused: `reason` is one of malformed,
    │                              tampered, wrong-purpose, expired (terminal)
    └── PipelineStepError          an unexpected failure inside a step, re-raised without the
                                   original text (which may quote patient data); carries the step
                                   name and the original exception's class name

Messages never contain a patient's value: only line numbers, column names, rule names and counts.
Send reasons are status codes and class names, never an address or a number. SendRejected is a
SendRefused (nothing went out) so that code catching SendRefused never mistakes it for a send;
a dispatcher that tells them apart catches the most specific class first.
"""

from __future__ import annotations

from typing import Any


class OpenslotsError(Exception):
    """Base class. `transient` is read by the tasks' retry condition."""

    transient: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Prefect pickles a failed task's exception; rebuild from the message and attributes
        # rather than calling __init__ again with arguments the message was made from.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[OpenslotsError], args: tuple[object, ...], state: dict[str, object]
) -> OpenslotsError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(OpenslotsError):
    """Settings or names that cannot work (unknown provider, bad URL...)."""


class RosterFileError(OpenslotsError):
    """The roster file cannot be read as a whole; nothing from it is written."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        self.line = line
        self.column = column
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{message}")


class RosterRejectedError(OpenslotsError):
    """A strict import found rejected rows; the batch is recorded, no client is written."""

    def __init__(self, batch_id: int, rejected: int, total_rows: int):
        self.batch_id = batch_id
        self.rejected = rejected
        self.total_rows = total_rows
        super().__init__(
            f"strict import: {rejected} of {total_rows} rows rejected, nothing written "
            f"(see `openslots roster rejections {batch_id}`)"
        )


class SendRefused(OpenslotsError):
    """Nothing went out; `reason` is PHI-free (a class name or a status code).

    `retry_after` is the delay the server asked for (HTTP Retry-After), in seconds.
    """

    def __init__(self, reason: str, *, transient: bool = False, retry_after: float | None = None):
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(f"send refused: {reason}")


class SendRejected(SendRefused):
    """Nothing went out and a retry cannot help: the message is dead with this reason.

    >>> SendRejected("SMTP 550 to RCPT", code=550).code
    550
    """

    def __init__(self, reason: str, *, code: int | None = None):
        self.code = code
        super().__init__(reason, transient=False)
        self.args = (f"send rejected: {reason}",)


class RecipientOptedOut(SendRejected):
    """The provider refused because the recipient unsubscribed there (Twilio 21610)."""


class SendOutcomeUnknown(OpenslotsError):
    """The message may have gone out; an operator decides, it is never retried blindly."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"send outcome unknown: {reason}")


class InvalidToken(OpenslotsError):
    """A signed token was refused; `reason` says why without quoting the token."""

    REASONS = ("malformed", "tampered", "wrong-purpose", "expired")

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"invalid token: {reason}")


class PipelineStepError(OpenslotsError):
    """An unexpected error in a step, stripped of its text (it may quote patient data)."""

    def __init__(self, step: str, cause: BaseException):
        self.step = step
        self.cause_type = type(cause).__name__
        self.transient = _looks_transient(cause)
        super().__init__(
            f"{step} failed with {self.cause_type} "
            "(details withheld: they may contain patient data)"
        )


def _looks_transient(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, ConnectionError | TimeoutError)
