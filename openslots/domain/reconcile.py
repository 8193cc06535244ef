"""A claimed slot is booked in our database, not yet in the EHR: the rules that say when it is
reconciled into the EHR's calendar, what an SIU^S12 at its time means, and when an
unreconciled one must be listed. Pure (no I/O).

Example:
    >>> s12_on_claimed("M-7", "M-7", reconciled=False)
    <S12Effect.RECONCILE: 'reconcile'>
    >>> s12_on_claimed("M-7", "M-8", reconciled=True)
    <S12Effect.CONFLICT: 'conflict'>
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from openslots.domain.eligibility import mrn_present
from openslots.domain.statuses import SlotStatus

RECONCILED_BY_HL7 = "hl7"  # slots.reconciled_by when the EHR's own S12 confirmed the booking


class S12Effect(StrEnum):
    """What an SIU^S12 (new appointment) at a claimed slot's time does to it."""

    RECONCILE = "reconcile"  # the winner's booking reached the EHR calendar
    CONFLICT = "conflict"  # another patient is booked at that time: reported, never applied
    NONE = "none"  # already reconciled: nothing to record


def s12_on_claimed(
    winner_mrn: str | None, patient_mrn: str | None, *, reconciled: bool
) -> S12Effect:
    """The S12's patient has the winner's MRN: reconciled (unless it already was); any other
    patient, or none we can name, is a conflict - the claim is never overwritten."""
    same = (
        mrn_present(winner_mrn)
        and mrn_present(patient_mrn)
        and (winner_mrn or "").strip(" ") == (patient_mrn or "").strip(" ")
    )
    if same:
        return S12Effect.NONE if reconciled else S12Effect.RECONCILE
    return S12Effect.CONFLICT


def reconcile_refusal(status: SlotStatus) -> str | None:
    """Only a claimed slot has a booking to move into the EHR's calendar."""
    if status is SlotStatus.CLAIMED:
        return None
    return f"only a claimed slot can be reconciled (this one is {status})"


def unreconciled_cutoff(now: dt.datetime, after_hours: float) -> dt.datetime:
    """Claimed before this instant and still not reconciled: listed (`--unreconciled`).

    >>> at = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    >>> unreconciled_cutoff(at, 4).isoformat()
    '2026-12-01T08:00:00+00:00'
    """
    return now - dt.timedelta(hours=after_hours)
