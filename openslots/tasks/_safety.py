"""Keep patient data out of Prefect: exceptions leaving a task carry no third-party text."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from openslots.errors import OpenslotsError, PipelineStepError
from openslots.resources import resources
from openslots.tasks._timings import note_task_run

P = ParamSpec("P")
R = TypeVar("R")


def phi_safe(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Re-raise anything but our own errors as PipelineStepError, without its text.

    Prefect writes a failed task's exception into its state message, logs and result storage;
    a pandas or driver message can quote a row. `from None` drops the original from the chain.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            note_task_run()  # for the run's report: its durations (tasks/_timings.py)
            try:
                return fn(*args, **kwargs)
            except OpenslotsError:
                raise
            except Exception as exc:
                if resources().settings.debug_unsafe_errors:
                    raise PipelineStepError(step, exc) from exc
                raise PipelineStepError(step, exc) from None

        return wrapper

    return decorate


def is_transient(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only errors marked transient."""
    try:
        state.result()
    except OpenslotsError as exc:
        return exc.transient
    except Exception:
        return False
    return False


# What a patient value looks like, for the second line of defence below: an email address, a
# phone number (10+ digits, with or without separators), a date (YYYY-MM-DD, YYYYMMDD,
# MM/DD/YYYY). Counts and ids are shorter than a phone number and are left alone.
_PATIENT_SHAPED = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?:\+|\()?\d(?:[\s().-]*\d){9,}"
    r"|\b\d{4}-\d{2}-\d{2}\b|\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b"
    r"|\b\d{1,2}/\d{1,2}/\d{4}\b"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace whatever is shaped like an email, a phone number or a date of birth.

    >>> redact("sent to ana@example.org, +1 (415) 555-0100, born 1990-01-02; batch 12: 40 rows")
    'sent to [redacted], [redacted], born [redacted]; batch 12: 40 rows'
    """
    return _PATIENT_SHAPED.sub(REDACTED, text)


class RedactPatientData(logging.Filter):
    """On the handlers that ship records to Prefect's API: the message as it will be stored,
    redacted (DESIGN.md keeps patient values out of log calls; this catches a mistake)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info or record.exc_text:  # a traceback can quote values: never ship one
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = RedactPatientData()


def install_redaction() -> int:
    """Add the filter to every Prefect API log handler configured so far (idempotent);
    returns how many handlers carry it."""
    from prefect.logging.handlers import APILogHandler

    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]  # fmt: skip
    handlers = {h for logger in loggers for h in logger.handlers if isinstance(h, APILogHandler)}
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return len(handlers)


def run_logger() -> Any:
    """Prefect's run logger inside a run (its API handlers redacting patient-shaped text), a
    plain logger when a task is called with `.fn`."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        logger = get_run_logger()
    except MissingContextError:
        return logging.getLogger("openslots")
    install_redaction()
    return logger
