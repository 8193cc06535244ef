"""The registrations flow: mobile-app registrations in, DOB matches approved, requests queued."""

from __future__ import annotations

from typing import Any

from prefect import flow

from openslots.flows._runs import run_name
from openslots.tasks.publish import publish_registrations_report
from openslots.tasks.registrations import apply_registrations


def _describe(_params: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [], ["source:registrations"]


@flow(
    name="registrations-import",
    flow_run_name=run_name("registrations-import", _describe),
    persist_result=False,
)
def registrations_import(path: str) -> dict[str, object]:
    """Apply a CSV or JSON-lines file of mobile registrations.

    Returns counts and PHI-free rejections: registrations, dob_matches, registered,
    pending_requests, rejected, rejections [{line, field, rule, message}]. Publishes
    `registrations-import-report` (markdown) and `registrations-import-counts` (table).
    """
    counts = apply_registrations(path).as_dict()
    publish_registrations_report(counts)
    return counts
