"""HL7 flows: import files of messages (store, then apply), and apply what a listener stored."""

from __future__ import annotations

from typing import Any

from prefect import flow

from openslots.tasks.hl7 import ingest_stored, store_files


@flow(name="hl7-import", persist_result=False)
def hl7_import(paths: list[str]) -> dict[str, Any]:
    """Store every message of the files or directories given, then apply them.

    Returns counts: messages, applied, duplicates, ignored, errors, warnings, rows_accepted,
    rows_rejected, slots_opened, slots_filled, ..., and `skipped_files` (path and reason of
    each file of a directory that is not HL7).
    """
    stored = store_files(paths)
    applied = ingest_stored()
    counts = applied.as_dict()
    counts["messages"] = stored.messages
    counts["duplicates"] = stored.duplicates
    counts["control_ids_reused"] = stored.control_ids_reused
    counts["errors"] += stored.errors
    counts["skipped_files"] = stored.skipped_files
    return counts


@flow(name="hl7-ingest", persist_result=False)
def hl7_ingest() -> dict[str, Any]:
    """Apply the messages stored by the MLLP listener (or requeued for reprocessing)."""
    counts = ingest_stored().as_dict()
    del counts["skipped_files"]  # reads no files
    return counts
