"""Keep patient data out of Prefect: exceptions leaving a task carry no third-party text."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from openslots.errors import OpenslotsError, PipelineStepError
from openslots.resources import resources

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


def run_logger() -> Any:
    """Prefect's run logger inside a run, a plain logger when a task is called with `.fn`."""
    import logging

    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("openslots")
