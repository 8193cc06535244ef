"""HL7 flows: import files of messages (store, then apply), and apply what a listener stored."""

from __future__ import annotations

from typing import Any

from prefect import flow

from openslots import reports
from openslots.flows._runs import run_name
from openslots.tasks.hl7 import ingest_stored, store_files
from openslots.tasks.publish import Progress, publish_report


def _describe_import(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    # How many paths, not which: a file name can hold anything.
    paths = params.get("paths") or []
    return [f"{len(paths)} path{'s' if len(paths) != 1 else ''}"], ["source:hl7"]


def _describe_ingest(_params: dict[str, Any]) -> tuple[list[str], list[str]]:
    return ["stored messages"], ["source:hl7"]


@flow(
    name="hl7-import",
    flow_run_name=run_name("hl7-import", _describe_import, minutes=True),
    persist_result=False,
)
def hl7_import(paths: list[str]) -> dict[str, Any]:
    """Store every message of the files or directories given, then apply them.

    Returns counts: messages, applied, duplicates, ignored, errors, warnings, rows_accepted,
    rows_rejected, slots_opened, slots_filled, ..., and `skipped_files` (path and reason of
    each file of a directory that is not HL7). Publishes `hl7-import-report` (markdown) and
    `hl7-import-counts` (table).
    """
    progress = Progress("hl7 import: store, then apply")
    stored = store_files(paths)
    progress(50.0)
    applied = ingest_stored()
    progress(100.0)
    counts = applied.as_dict()
    counts["messages"] = stored.messages
    counts["duplicates"] = stored.duplicates
    counts["control_ids_reused"] = stored.control_ids_reused
    counts["errors"] += stored.errors
    counts["skipped_files"] = stored.skipped_files
    publish_report(reports.hl7_report("hl7-import", counts))
    return counts


@flow(
    name="hl7-ingest",
    flow_run_name=run_name("hl7-ingest", _describe_ingest, minutes=True),
    persist_result=False,
)
def hl7_ingest() -> dict[str, Any]:
    """Apply the messages stored by the MLLP listener (or requeued for reprocessing); a run
    that applied any publishes `hl7-ingest-report` and `hl7-ingest-counts`."""
    counts = ingest_stored().as_dict()
    del counts["skipped_files"]  # reads no files
    if counts["messages"]:  # a scheduled run with no backlog publishes nothing
        publish_report(reports.hl7_report("hl7-ingest", counts))
    return counts
