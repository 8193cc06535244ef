"""What a patient does with an offer's link, pure: what the claim page may say, what a decline
answers, when a Serial slot moves on at once, and when nobody is left to offer it to.

The page never says who else was offered or who won: every reason a slot can no longer be
claimed reads "no longer available" (taken, closed and expired alike).

Example:
    >>> import datetime as dt
    >>> now = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)
    >>> page_state(SlotStatus.OPEN, claimed_offer_id=None, offer_id=4, declined=False,
    ...            starts_at=now + dt.timedelta(hours=3), now=now)
    <PageState.CLAIMABLE: 'claimable'>
    >>> pull_forward([now + dt.timedelta(minutes=20), now + dt.timedelta(minutes=50)], now)
    datetime.timedelta(seconds=1200)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum

from openslots.domain.offers import ClaimResult
from openslots.domain.statuses import SlotStatus


class PageState(StrEnum):
    """What the claim page shows for one offer."""

    CLAIMABLE = "claimable"  # the "Claim this appointment" and "Not for me" buttons
    WON = "won"  # this patient's claim won: "it's yours"
    DECLINED = "declined"  # this patient said no
    UNAVAILABLE = "unavailable"  # taken, closed or started: "no longer available"


def page_state(
    status: SlotStatus,
    *,
    claimed_offer_id: int | None,
    offer_id: int,
    declined: bool,
    starts_at: dt.datetime | None,
    now: dt.datetime,
) -> PageState:
    """The claim page of one offer."""
    if status is SlotStatus.CLAIMED and claimed_offer_id == offer_id:
        return PageState.WON
    if declined:
        return PageState.DECLINED
    if status is SlotStatus.OPEN and starts_at is not None and starts_at > now:
        return PageState.CLAIMABLE
    return PageState.UNAVAILABLE


def decline_answer(*, won: bool) -> ClaimResult:
    """A decline through a valid token: final and idempotent (`declined`), whatever became of
    the slot since, so it tells nothing about others; only the winner keeps what they won
    (`won`: cancelling a booked appointment is the practice's business, not a link's)."""
    return ClaimResult.WON if won else ClaimResult.DECLINED


def group_declined(declined: Sequence[bool]) -> bool:
    """Whether everyone of a Serial slot's latest offered group said no, so that the next
    group need not wait out the timeout.

    >>> group_declined([True, True]), group_declined([True, False]), group_declined([])
    (True, False, False)
    """
    return bool(declined) and all(declined)


def pull_forward(pending_due: Sequence[dt.datetime], now: dt.datetime) -> dt.timedelta:
    """How far to move every pending group of a slot so that the next one is due now (the
    gaps between later groups are kept); zero when the next one is already due."""
    if not pending_due:
        return dt.timedelta(0)
    return max(min(pending_due) - now, dt.timedelta(0))


def no_one_left(status: SlotStatus, *, offers: int, pending: int, undeclined_sent: int) -> bool:
    """An open slot whose every offer went out and was declined: it stays open (staff may
    close it or offer it by phone), and `slots list` says so.

    >>> no_one_left(SlotStatus.OPEN, offers=2, pending=0, undeclined_sent=0)
    True
    """
    return status is SlotStatus.OPEN and offers > 0 and pending == 0 and undeclined_sent == 0
