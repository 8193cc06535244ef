"""Who is alerted, and why not: the seed's alert rule as one pure function over one connection.

`alert_reason` answers for one connection and one slot's location. The reasons are checked in
this order, and the first that applies is the answer:

1. `other_location` - the connection is with another Location of the provider: the slot is not
   theirs to hear about, whatever else is true.
2. `opted_out` - the contact told the provider never to write again (email unsubscribe, SMS STOP):
   the patient's own word, which no staff action overrides.
3. `declined`, 4. `paused`, 5. `not_approved` (Pending) - the practice's decision on the
   Connections screen, most final first.
6. `no_mrn` - an integrated provider's Approved connection without a Client ID / MRN: the seed
   asks for it only once the connection is Approved, so it is the last thing left to fix.
7. `outside_availability` - the patient's availability windows do not hold the whole slot
   (domain.availability): about this slot only, and only the patient can change it.
8. `contact_cap` - already `OPENSLOTS_ALERT_MAX_PER_WEEK` offers from this provider in the
   7 days before the slot opened: lifts by itself as the days pass.
9. `eligible`.

The order follows who can lift the obstacle (nobody / only the patient / the practice's
decision / data entry), so the reason shown is the one that still blocks after every later
one is fixed. `connectors/database/eligibility.py` asks the same question in SQL; the tests
in tests/connectors/test_eligibility*.py keep the two in agreement.
"""

from __future__ import annotations

from enum import StrEnum

from openslots.domain.statuses import ConnectionStatus


class AlertReason(StrEnum):
    """Why a connection is (`eligible`) or is not alerted for a provider and location."""

    ELIGIBLE = "eligible"
    NOT_APPROVED = "not_approved"  # Pending: the client asked, the practice has not approved
    PAUSED = "paused"
    DECLINED = "declined"
    NO_MRN = "no_mrn"
    OPTED_OUT = "opted_out"
    OTHER_LOCATION = "other_location"
    OUTSIDE_AVAILABILITY = "outside_availability"
    CONTACT_CAP = "contact_cap"


_STATUS_REASONS = {
    ConnectionStatus.DECLINED: AlertReason.DECLINED,
    ConnectionStatus.PAUSED: AlertReason.PAUSED,
    ConnectionStatus.PENDING: AlertReason.NOT_APPROVED,
}


def mrn_present(mrn: str | None) -> bool:
    """An MRN counts when it holds more than spaces (SQL's trim(), which removes spaces only).

    >>> [mrn_present(m) for m in (None, "", "   ", "00042")]
    [False, False, False, True]
    """
    return mrn is not None and mrn.strip(" ") != ""


def over_contact_cap(recent_offers: int, max_per_week: int) -> bool:
    """A connection offered `max_per_week` times in the last 7 days gets no more (0: no cap).

    >>> [over_contact_cap(n, 3) for n in (2, 3)], over_contact_cap(9, 0)
    ([False, True], False)
    """
    return max_per_week > 0 and recent_offers >= max_per_week


def slot_reason(*, fits_availability: bool, recent_offers: int, max_per_week: int) -> AlertReason:
    """What one slot adds for an otherwise eligible connection (reasons 7 and 8)."""
    if not fits_availability:
        return AlertReason.OUTSIDE_AVAILABILITY
    if over_contact_cap(recent_offers, max_per_week):
        return AlertReason.CONTACT_CAP
    return AlertReason.ELIGIBLE


def alert_reason(
    status: ConnectionStatus,
    *,
    integrated: bool,
    has_mrn: bool,
    opted_out: bool,
    at_location: bool = True,
    fits_availability: bool = True,
    recent_offers: int = 0,
    max_per_week: int = 0,
) -> AlertReason:
    """The reason for one connection, in the order the module docstring gives.

    >>> alert_reason(ConnectionStatus.APPROVED, integrated=True, has_mrn=False, opted_out=False)
    <AlertReason.NO_MRN: 'no_mrn'>
    >>> alert_reason(ConnectionStatus.PAUSED, integrated=False, has_mrn=False, opted_out=True)
    <AlertReason.OPTED_OUT: 'opted_out'>
    """
    if not at_location:
        return AlertReason.OTHER_LOCATION
    if opted_out:
        return AlertReason.OPTED_OUT
    if status is not ConnectionStatus.APPROVED:
        return _STATUS_REASONS[ConnectionStatus(status)]
    if integrated and not has_mrn:
        return AlertReason.NO_MRN
    return slot_reason(
        fits_availability=fits_availability,
        recent_offers=recent_offers,
        max_per_week=max_per_week,
    )


def eligible_for_alerts(
    status: ConnectionStatus, *, integrated: bool, has_mrn: bool, opted_out: bool
) -> bool:
    """Seed rule: only Approved connections; integrated providers also need an MRN.

    >>> eligible_for_alerts(ConnectionStatus.APPROVED, integrated=True, has_mrn=False,
    ...                     opted_out=False)
    False
    """
    reason = alert_reason(status, integrated=integrated, has_mrn=has_mrn, opted_out=opted_out)
    return reason is AlertReason.ELIGIBLE
