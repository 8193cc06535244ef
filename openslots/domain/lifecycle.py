"""Rules of the seed's Connections and Invitations screens, as pure functions."""

from __future__ import annotations

import datetime as dt

from openslots.domain.statuses import RESEND_FORBIDDEN, InvitationStatus

RESEND_REFUSALS = {
    InvitationStatus.OPTED_OUT: "the client opted out of this provider's messages",
    InvitationStatus.CONNECTED: "the client is already Connected (Approved on the Connections "
    "screen)",
    InvitationStatus.NEW: "a person with this email is already Connected with this provider",
}


def resend_refusal(status: InvitationStatus) -> str | None:
    """Why a resend is not permitted (the seed's grey airplane icon), or None when it is.

    >>> resend_refusal(InvitationStatus.SENT) is None
    True
    >>> resend_refusal(InvitationStatus.NEW) is not None
    True
    """
    if status in RESEND_FORBIDDEN:
        return RESEND_REFUSALS[status]
    if status is InvitationStatus.QUEUED:
        return "the invitation is still queued: run `openslots outbox send`"
    return None


def dob_match(
    invitation_email: str,
    invitation_dob: dt.date,
    registration_email: str,
    registration_dob: dt.date,
) -> bool:
    """The seed's Date of Birth Match: same email (trimmed, any case) and same date of birth.

    >>> dob_match(" Ana@Example.org", dt.date(1990, 1, 2), "ana@example.ORG ", dt.date(1990, 1, 2))
    True
    """
    return (
        invitation_email.strip().lower() == registration_email.strip().lower()
        and invitation_dob == registration_dob
    )


def status_after_registration(
    current: InvitationStatus, *, matched: bool, other_person_connected: bool
) -> InvitationStatus:
    """An invitation's status once its email registered in the app.

    A DOB match connects it; otherwise New when another person with the email is Connected
    (a guardian whose dependent connected), else Registered. Final statuses stay.
    """
    if current in (InvitationStatus.OPTED_OUT, InvitationStatus.CONNECTED):
        return current
    if matched:
        return InvitationStatus.CONNECTED
    if other_person_connected:
        return InvitationStatus.NEW
    if current is InvitationStatus.INVITED:
        return current
    return InvitationStatus.REGISTERED
