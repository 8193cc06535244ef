"""Connection and invitation statuses, with the seed's meanings (who is alerted: eligibility.py)."""

from __future__ import annotations

from enum import StrEnum


class ConnectionStatus(StrEnum):
    """A client x provider x location connection (seed: Clients > Connections)."""

    PENDING = "Pending"  # the client asked to connect; no Alerts until approved
    APPROVED = "Approved"  # receives Alerts (integrated providers: only with an MRN)
    PAUSED = "Paused"
    DECLINED = "Declined"


class InvitationStatus(StrEnum):
    """Seed statuses (Clients > Invitations), plus QUEUED: written, not yet dispatched."""

    QUEUED = "Queued"  # pipeline-internal: in the outbox, becomes SENT when dispatched
    SENT = "Sent"
    REGISTERED = "Registered"
    INVITED = "Invited"
    OPTED_OUT = "Opted-Out"
    CONNECTED = "Connected"
    NEW = "New"


RESEND_FORBIDDEN = frozenset(
    {InvitationStatus.OPTED_OUT, InvitationStatus.CONNECTED, InvitationStatus.NEW}
)


class SlotStatus(StrEnum):
    """An appointment slot (`slots.status`): open while offered, claimed once won (and it stays
    claimed), or closed with a `ClosedReason`."""

    OPEN = "open"  # cancelled or deleted in the EHR, or opened by staff: offered
    CLAIMED = "claimed"  # a patient won it through a claim link
    CLOSED = "closed"


class ClosedReason(StrEnum):
    """Why a slot closed without a claim (`slots.closed_reason`)."""

    STAFF = "staff"  # `openslots slots close`
    BOOKED_IN_EHR = "booked_in_ehr"  # an SIU^S12 books that time (0003: the old `filled`)
    LEAD_TIME = "lead_time"  # it arrived too late, or the cutoff passed unclaimed
