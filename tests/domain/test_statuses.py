"""The seed's status words, written out by hand from the help page (Clients > Connections and
Clients > Invitations), so that a renamed value or a changed resend rule fails here."""

from __future__ import annotations

import pytest

from openslots.domain.lifecycle import resend_refusal
from openslots.domain.statuses import RESEND_FORBIDDEN, ConnectionStatus, InvitationStatus


def test_connection_statuses_are_the_seeds_four() -> None:
    assert [s.value for s in ConnectionStatus] == ["Pending", "Approved", "Paused", "Declined"]


def test_invitation_statuses_are_the_seeds_six_plus_queued() -> None:
    assert {s.value for s in InvitationStatus} == {
        "Queued",  # ours: written, not yet dispatched
        "Sent",
        "Registered",
        "Invited",
        "Opted-Out",
        "Connected",
        "New",
    }


# Seed: "You will not be able to resend invitations for these users" (New), the grey airplane
# icon for Opted-Out and Connected; a Queued one has not gone out yet.
RESEND_PERMITTED = {
    "Queued": False,
    "Sent": True,
    "Registered": True,
    "Invited": True,
    "Opted-Out": False,
    "Connected": False,
    "New": False,
}


@pytest.mark.parametrize(("status", "permitted"), RESEND_PERMITTED.items())
def test_resend_permitted(status: str, permitted: bool) -> None:
    assert (resend_refusal(InvitationStatus(status)) is None) is permitted


def test_resend_forbidden_exactly_for_the_seed_statuses() -> None:
    assert {s.value for s in RESEND_FORBIDDEN} == {"Opted-Out", "Connected", "New"}
