"""What every API function shares: the schema check, a connection or a transaction, the
errors callers catch."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection

from openslots.errors import OpenslotsError
from openslots.resources import resources


class InvalidRegistration(OpenslotsError):
    """The registration breaks a rule; `rejections` lists {line, field, rule, message}, as a
    registrations file's findings do (line 1: the registration itself), never a value.
    `line`, `field` and `rule` are the first one's."""

    def __init__(self, rejections: list[dict[str, Any]]):
        self.rejections = rejections
        first = rejections[0] if rejections else {}
        self.line: int | None = first.get("line")
        self.field: str | None = first.get("field")
        self.rule: str | None = first.get("rule")
        fields = ", ".join(f"{r['field']} ({r['rule']})" for r in rejections)
        super().__init__(f"invalid registration: {fields}")


class NotFoundError(OpenslotsError):
    """The id asked for does not exist (an import batch...); the message names the id."""


def require_current_schema() -> None:
    """Raise ConfigurationError (run `openslots db upgrade`) unless the schema is current."""
    resources().require_current_schema()


def _reading() -> AbstractContextManager[Connection]:
    return resources().require_current_schema().connect()


def _writing() -> AbstractContextManager[Connection]:
    return resources().require_current_schema().begin()
