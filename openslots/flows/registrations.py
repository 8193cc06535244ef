"""The registrations flow: mobile-app registrations in, DOB matches approved, requests queued."""

from __future__ import annotations

from prefect import flow

from openslots.tasks.registrations import apply_registrations


@flow(name="registrations-import", persist_result=False)
def registrations_import(path: str) -> dict[str, object]:
    """Apply a CSV or JSON-lines file of mobile registrations.

    Returns counts and PHI-free rejections: registrations, dob_matches, registered,
    pending_requests, rejected, rejections [{line, field, rule, message}].
    """
    return apply_registrations(path).as_dict()
