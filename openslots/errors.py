"""Project exceptions; each carries structured, PHI-free data (lines, fields, rules, counts).

Exception tree::

    OpenslotsError                 base; `transient` says whether a retry may help
    ├── ConfigurationError         bad settings or an unknown provider/location (terminal)
    ├── RosterFileError            the file as a whole is unusable: missing column, bad encoding,
    │                              malformed CSV (terminal); carries `line` and `column` when known
    ├── RosterRejectedError        --strict import with rejected rows: nothing written (terminal)
    ├── SendRefused                a sender refused a message before anything went out: safe
    │                              to try again (`transient` when the refusal was temporary)
    ├── SendOutcomeUnknown         the message may or may not have gone out (connection lost
    │                              after the data was sent, 5xx): never retried blindly
    └── PipelineStepError          an unexpected failure inside a step, re-raised without the
                                   original text (which may quote patient data); carries the step
                                   name and the original exception's class name

Messages never contain a patient's value: only line numbers, column names, rule names and counts.
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
    """Nothing went out; `reason` is PHI-free (a class name or a status code)."""

    def __init__(self, reason: str, *, transient: bool = False):
        self.reason = reason
        self.transient = transient
        super().__init__(f"send refused: {reason}")


class SendOutcomeUnknown(OpenslotsError):
    """The message may have gone out; an operator decides, it is never retried blindly."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"send outcome unknown: {reason}")


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
