"""Drop-directory flows (what `openslots serve` schedules): files put into the drop directory
are imported, then moved out of it, so each file is imported once.

Layout under OPENSLOTS_DROP_DIR (default `OPENSLOTS_HOME/drop`, made on first use)::

    roster/PROVIDER/LOCATION/*.csv   nightly roster sync (mode sync) for that provider/location
    hl7/*                            HL7 files (any name: decided by content, see `hl7 import`)
    processed/roster/..., processed/hl7/...   imported (rejected rows are in the batch)
    failed/roster/..., failed/hl7/...         not imported: a file error, or not an HL7 file

A sender should write a file elsewhere and move it in (a rename is atomic): a file still being
written could be read half-way. Parameters and results carry paths and names only.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from prefect import flow, tags

from openslots import reports
from openslots.domain import clock
from openslots.errors import ConfigurationError, OpenslotsError
from openslots.flows._runs import ORIGIN_DROP, run_name
from openslots.flows.hl7_ingest import hl7_import
from openslots.flows.roster_sync import roster_sync
from openslots.settings import get_settings
from openslots.tasks.publish import publish_report

log = logging.getLogger("openslots.drops")


def _drop(directory: str | None, kind: str) -> Path:
    """The `kind` folder of the drop directory: the `directory` parameter, else
    OPENSLOTS_DROP_DIR, else OPENSLOTS_HOME/drop. The default is made on first use (a new
    install has nothing to sync yet, not an error); a named one must exist (a missing mount
    must not pass for an empty drop), its `kind` folder is made."""
    settings = get_settings()
    if directory:
        root, named = Path(directory).expanduser().resolve(), "the `directory` parameter"
    elif settings.drop_dir is not None:
        root, named = settings.resolved_drop_dir(), "OPENSLOTS_DROP_DIR"
    else:
        root, named = settings.resolved_drop_dir(), None
    if named is not None and not root.is_dir():
        raise ConfigurationError(
            f"drop directory {root} does not exist: create it, or point {named} at one that does"
        )
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _move(file: Path, folder: Path, outcome: str, kind: str) -> Path:
    """Move `file` (under `folder`) to `outcome`/`kind`/ beside it, keeping its sub-path, with
    the time it was handled in front of its name so a file dropped again does not overwrite."""
    stamp = clock.now().astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = (
        folder.parent / outcome / kind / file.relative_to(folder).parent / f"{stamp}-{file.name}"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    file.replace(target)
    return target


def _describe(_params: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [], [ORIGIN_DROP]


@flow(
    name="roster-drop",
    flow_run_name=run_name("roster-drop", _describe),
    persist_result=False,
)
def roster_drop(directory: str | None = None) -> dict[str, Any]:
    """Sync every roster in `roster/PROVIDER/LOCATION/*.csv` of the drop directory (oldest
    first), then move each file to processed/ (imported) or failed/ (the file was refused)."""
    folder = _drop(directory, "roster")
    files = sorted(folder.glob("*/*/*.csv"), key=lambda f: (f.stat().st_mtime, str(f)))
    imported: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for file in files:
        provider, location = file.parent.parent.name, file.parent.name
        try:
            with tags(ORIGIN_DROP):  # the roster-sync run says where its file came from
                report = roster_sync(str(file), provider, location, mode="sync")
        except OpenslotsError as exc:  # the file as a whole was refused; its reason has no values
            moved = _move(file, folder, "failed", "roster")
            failed.append({"path": str(moved), "reason": str(exc)})
            log.warning("roster %s refused and moved to %s: %s", file.name, moved, exc)
            continue
        moved = _move(file, folder, "processed", "roster")
        imported.append({"path": str(moved), "batch_id": report.get("batch_id")})
    return {"files": len(files), "imported": imported, "failed": failed}


@flow(
    name="hl7-drop",
    flow_run_name=run_name("hl7-drop", _describe, minutes=True),
    persist_result=False,
)
def hl7_drop(directory: str | None = None) -> dict[str, Any]:
    """Import every file in `hl7/` of the drop directory (stored, then applied), then move HL7
    files to processed/ (their messages, errors included, are in the store) and the files that
    are not HL7 to failed/. A run that found files publishes `hl7-drop-report` and
    `hl7-drop-counts` (its hl7-import run publishes its own)."""
    folder = _drop(directory, "hl7")
    files = sorted(f for f in folder.iterdir() if f.is_file())
    if not files:
        return {"files": 0, "skipped_files": []}
    with tags(ORIGIN_DROP):
        counts = hl7_import([str(folder)])
    skipped = {str(Path(entry["path"]).resolve()) for entry in counts.get("skipped_files", [])}
    moved_skipped = []
    for file in files:
        if str(file.resolve()) in skipped:
            moved_skipped.append({"path": str(_move(file, folder, "failed", "hl7"))})
        else:
            _move(file, folder, "processed", "hl7")
    counts["files"] = len(files)
    counts["failed_files"] = moved_skipped
    publish_report(reports.hl7_report("hl7-drop", counts))
    return counts
