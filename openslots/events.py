"""Prefect events this pipeline emits: `openslots.slot.opened` with the slot's id only, which
the `open-slot-alerts` deployment's trigger turns into a run (README "Events")."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

SLOT_OPENED = "openslots.slot.opened"
SLOT_RESOURCE_PREFIX = "openslots.slot."
SLOT_ID_LABEL = "openslots.slot.id"

log = logging.getLogger("openslots.events")
_skipped_once = False


def slot_resource(slot_id: int) -> dict[str, str]:
    """The event's resource: an id and the slot id as a label (what the trigger passes on)."""
    return {"prefect.resource.id": f"{SLOT_RESOURCE_PREFIX}{slot_id}", SLOT_ID_LABEL: str(slot_id)}


def _api_configured() -> bool:
    # A command that runs no flow has not imported Prefect (tests/cli/test_lazy_imports.py):
    # without a server to tell (`openslots serve` or PREFECT_API_URL) it does not start now.
    if "prefect" not in sys.modules and not os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def slots_opened(slot_ids: Iterable[int]) -> int:
    """Emit `openslots.slot.opened` for each slot (after its transaction committed). Never
    raises: the slot is open and its offers are queued whether or not Prefect hears of it.
    Returns how many events were handed to Prefect's events worker."""
    global _skipped_once
    ids = sorted({int(i) for i in slot_ids})
    if not ids:
        return 0
    try:
        if not _api_configured():
            if not _skipped_once:
                log.debug("no Prefect API configured: slot-opened events are not emitted")
                _skipped_once = True
            return 0
        from prefect.events import emit_event

        return sum(
            emit_event(SLOT_OPENED, resource=slot_resource(slot_id)) is not None for slot_id in ids
        )
    except Exception as exc:  # no API, a closed socket: the opening itself stands
        log.debug("slot-opened events not emitted (%s)", type(exc).__name__)
        return 0
