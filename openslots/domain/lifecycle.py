"""Rules of the seed's Invitations screen, as pure functions over statuses and counts.

The repository (`connectors/database/lifecycle.py`) loads what a rule needs, asks it and writes
the answer. A refused change comes back as a `Refusal`, whose reason completes the sentence
"invitation N ..." and holds no patient data; the repository raises it as `LifecycleError`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from openslots.domain.normalise import email_value
from openslots.domain.statuses import RESEND_FORBIDDEN, InvitationStatus

RESEND_REFUSALS = {
    InvitationStatus.OPTED_OUT: "the client opted out of this provider's messages",
    InvitationStatus.CONNECTED: "the client is already Connected (Approved on the Connections "
    "screen)",
    InvitationStatus.NEW: "a person with this email is already Connected with this provider",
}
# Statuses a registration or an approval never changes: the client's own word, and the goal.
FINAL = frozenset({InvitationStatus.OPTED_OUT, InvitationStatus.CONNECTED})
# Seed's New: "a Connection with a patient correlating to that email address" exists. Only an
# invitation still on its way to connecting becomes New; Connected and Opted-Out stay.
BECOMES_NEW = frozenset(
    {
        InvitationStatus.QUEUED,
        InvitationStatus.SENT,
        InvitationStatus.REGISTERED,
        InvitationStatus.INVITED,
    }
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A change the seed's rules do not permit; `reason` completes "invitation N ..."."""

    reason: str


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


def stuck_message_refusal(message_id: int, message_status: str) -> Refusal:
    """A message of the invitation that `outbox send` will not send again: the refusal names
    the command that can help (never `outbox send`).

    >>> "`openslots outbox resolve 7 --sent`" in stuck_message_refusal(7, "unknown").reason
    True
    """
    if message_status == "unknown":
        return Refusal(
            f"its message {message_id} may or may not have gone out (a send was interrupted): "
            f"decide with `openslots outbox resolve {message_id} --sent` or `--not-sent`"
        )
    return Refusal(
        f"its message {message_id} was refused for good: see `openslots outbox list --state "
        f"dead`, then `openslots outbox retry {message_id}` once the address is fixed"
    )


def resend_attempt(
    status: InvitationStatus,
    *,
    attempt: int,
    messages_attempt: int,
    message_waiting: bool,
    stuck_message: tuple[int, str] | None = None,
) -> int | Refusal:
    """The attempt a resend asks for, or why there is none.

    An invitation owes attempt `attempt`; dispatch turns it into messages and records that in
    `messages_attempt`. A resend records the next attempt, to be materialised by the next
    dispatch. An attempt still owed, or a message still waiting in the outbox, refuses it: the
    client would get two at once (and a dispatcher materialising the owed attempt at this very
    moment never races a resend, since a resend waits until the messages exist).

    >>> resend_attempt(InvitationStatus.SENT, attempt=2, messages_attempt=2,
    ...                message_waiting=False)
    3

    A `stuck_message` (id, status) of the current attempt, unknown or dead, refuses it with the
    command that decides it: a resend would send twice what may have gone out.
    """
    if stuck_message is not None:
        return stuck_message_refusal(*stuck_message)
    refusal = resend_refusal(status)
    if refusal:
        return Refusal(f"cannot be resent: {refusal}")
    if message_waiting or messages_attempt < attempt:
        return Refusal("already has a message waiting to be sent")
    return attempt + 1


def after_request(status: InvitationStatus) -> InvitationStatus | Refusal:
    """A provider-initiated request goes only to a client who registered: Registered -> Invited."""
    if status is not InvitationStatus.REGISTERED:
        return Refusal(
            f"is {status}: a request can only go to a client who registered in the app and is "
            "not connected (status Registered)"
        )
    return InvitationStatus.INVITED


def after_accept(status: InvitationStatus) -> InvitationStatus | Refusal:
    """Accepting a request in the app connects the invitation: Invited -> Connected."""
    if status is not InvitationStatus.INVITED:
        return Refusal(f"is {status}, not Invited: no request is waiting for an answer")
    return InvitationStatus.CONNECTED


def dob_match(
    invitation_email: str,
    invitation_dob: dt.date,
    registration_email: str,
    registration_dob: dt.date,
) -> bool:
    """The seed's Date of Birth Match: same email (normalised: trimmed, any case) and same date
    of birth.

    >>> dob_match(" Ana@Example.org", dt.date(1990, 1, 2), "ana@example.ORG ", dt.date(1990, 1, 2))
    True
    """
    return (
        email_value(invitation_email) == email_value(registration_email)
        and invitation_dob == registration_dob
    )


def dob_match_connects(status: InvitationStatus, *, matched: bool) -> bool:
    """A Date of Birth Match approves the connection at once and connects the invitation,
    unless the client opted out or it is already Connected."""
    return matched and status not in FINAL


def becomes_new(status: InvitationStatus) -> bool:
    """Another person with this invitation's email is now Connected with the provider (a
    guardian whose dependent connected): the invitation shows New and cannot be resent."""
    return status in BECOMES_NEW


def status_after_registration(
    current: InvitationStatus, *, matched: bool, other_person_connected: bool
) -> InvitationStatus:
    """An invitation's status once its email registered in the app.

    A DOB match connects it; otherwise New when another person with the email is Connected
    (a guardian whose dependent connected), else Registered. Final statuses stay, and so does
    Invited (the provider's request still waits for the client's answer).
    """
    if current in FINAL:
        return current
    if dob_match_connects(current, matched=matched):
        return InvitationStatus.CONNECTED
    if other_person_connected:
        return InvitationStatus.NEW
    if current is InvitationStatus.INVITED:
        return current
    return InvitationStatus.REGISTERED


def status_after_approval(current: InvitationStatus) -> InvitationStatus:
    """Seed: Connected = the client has been Approved on the Connections screen (an opted-out
    client stays Opted-Out)."""
    return current if current in FINAL else InvitationStatus.CONNECTED


def after_opt_out(status: InvitationStatus) -> tuple[InvitationStatus, InvitationStatus] | None:
    """(new status, status_before_opt_out to remember), or None when already Opted-Out.

    >>> after_opt_out(InvitationStatus.SENT)
    (<InvitationStatus.OPTED_OUT: 'Opted-Out'>, <InvitationStatus.SENT: 'Sent'>)
    """
    if status is InvitationStatus.OPTED_OUT:
        return None
    return InvitationStatus.OPTED_OUT, status


def after_opt_in(
    status: InvitationStatus,
    status_before_opt_out: InvitationStatus | None,
    *,
    still_opted_out: bool,
) -> InvitationStatus | None:
    """The status an opt-in restores, or None when the invitation stays as it is.

    Only an Opted-Out invitation changes, and only when no other opt-out still covers its
    contact (an opted-out email keeps it out after the phone opted back in). It returns to the
    status the opt-out replaced; Sent when that was not recorded.
    """
    if status is not InvitationStatus.OPTED_OUT or still_opted_out:
        return None
    return status_before_opt_out or InvitationStatus.SENT


def registration_outcome(*, dob_matched: bool, requested: bool) -> str:
    """A registration's outcome: `dob_match` when any invitation connected, else
    `pending_request` when it asked a provider to connect, else `registered`."""
    if dob_matched:
        return "dob_match"
    return "pending_request" if requested else "registered"
