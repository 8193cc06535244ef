"""Secrets kept in Prefect Secret blocks: read by flow runs whose environment does not set
them, written once from the environment by `openslots prefect register-blocks`.

A fleet's workers then need no password in their environment or in prefect.yaml: the block
is stored (encrypted at rest) by the Prefect server and read over its API. Values are never
logged, printed or returned in a report: only block names and what was done with them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from openslots.errors import ConfigurationError
from openslots.settings import SECRET_BLOCKS

if TYPE_CHECKING:
    from openslots.settings import Settings

log = logging.getLogger("openslots.secrets")

SECRET_BLOCK_TYPE = "secret"


def setting_name(field: str) -> str:
    """The environment variable of a Settings field.

    >>> setting_name("smtp_password")
    'OPENSLOTS_SMTP_PASSWORD'
    """
    return f"OPENSLOTS_{field.upper()}"


def secrets_from_blocks(names: list[str]) -> dict[str, str]:
    """{block name: value} of the Secret blocks among `names` that exist, when this runs inside
    a flow run that reports to a Prefect server; {} otherwise (outside a flow, or on Prefect's
    temporary server, which holds no blocks). Each name is read once per process."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return {}
    api_url = PREFECT_API_URL.value()
    if not api_url:
        return {}
    found = {name: _read_secret(api_url, name) for name in names}
    return {name: value for name, value in found.items() if value is not None}


@lru_cache(maxsize=64)
def _read_secret(api_url: str, name: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name, SECRET_BLOCK_TYPE, include_secrets=True
            )
    except ObjectNotFound:
        return None
    except Exception as exc:  # an API that does not answer: the environment's value stands
        log.warning("could not read the Prefect Secret block %s (%s)", name, type(exc).__name__)
        return None
    value = document.data.get("value")
    return value if isinstance(value, str) else None


def forget_secret_blocks() -> None:
    """Read the blocks again on next use (tests; a block changed while a process runs)."""
    _read_secret.cache_clear()


@dataclass(frozen=True)
class BlockOutcome:
    """What `register_secret_blocks` did with one block (never its value)."""

    block: str
    setting: str
    status: str  # created | updated | exists (kept; --overwrite replaces it) | unset


def register_secret_blocks(settings: Settings, overwrite: bool = False) -> list[BlockOutcome]:
    """Create a Prefect Secret block for every secret `settings` holds (read from the
    environment); an existing block is kept unless `overwrite`. Needs PREFECT_API_URL: blocks
    saved on Prefect's temporary server would vanish with it."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigurationError(
            "PREFECT_API_URL is unset: point it at the Prefect server your workers use (e.g. "
            "http://prefect.internal:4200/api), or run this where `openslots serve` runs"
        )
    outcomes = []
    with get_client(sync_client=True) as client:
        for field, block in SECRET_BLOCKS.items():
            value = getattr(settings, field)
            if value is None:
                outcomes.append(BlockOutcome(block, setting_name(field), "unset"))
                continue
            try:
                client.read_block_document_by_name(block, SECRET_BLOCK_TYPE, include_secrets=False)
                exists = True
            except ObjectNotFound:
                exists = False
            if exists and not overwrite:
                outcomes.append(BlockOutcome(block, setting_name(field), "exists"))
                continue
            raw: Any = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            Secret(value=raw).save(block, overwrite=True)
            status = "updated" if exists else "created"
            outcomes.append(BlockOutcome(block, setting_name(field), status))
    forget_secret_blocks()
    return outcomes


def as_dicts(outcomes: list[BlockOutcome]) -> list[dict[str, str]]:
    return [asdict(outcome) for outcome in outcomes]
