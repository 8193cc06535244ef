"""Invitation rules without a database: hand-written tables from the seed's Invitations screen,
and properties for the opt-out round trip."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.lifecycle import (
    Refusal,
    after_accept,
    after_opt_in,
    after_opt_out,
    after_request,
    becomes_new,
    dob_match,
    dob_match_connects,
    registration_outcome,
    resend_attempt,
    status_after_approval,
    status_after_registration,
)
from openslots.domain.statuses import InvitationStatus as I

QUEUED, SENT, REGISTERED, INVITED = I.QUEUED, I.SENT, I.REGISTERED, I.INVITED
OPTED_OUT, CONNECTED, NEW = I.OPTED_OUT, I.CONNECTED, I.NEW


@pytest.mark.parametrize(
    ("status", "waiting", "attempts", "expected"),
    [
        (SENT, False, (1, 1), 2),
        (SENT, False, (3, 3), 4),
        (REGISTERED, False, (1, 1), 2),
        (INVITED, False, (2, 2), 3),
        (SENT, True, (1, 1), Refusal("already has a message waiting to be sent")),
        # a resend recorded but not yet materialised is waiting too
        (SENT, False, (2, 1), Refusal("already has a message waiting to be sent")),
        (
            QUEUED,
            False,
            (1, 1),
            Refusal(
                "cannot be resent: the invitation is still queued: run `openslots outbox send`"
            ),
        ),
        (
            OPTED_OUT,
            True,
            (1, 1),
            Refusal("cannot be resent: the client opted out of this provider's messages"),
        ),
        (
            CONNECTED,
            False,
            (1, 1),
            Refusal(
                "cannot be resent: the client is already Connected (Approved on the "
                "Connections screen)"
            ),
        ),
        (
            NEW,
            False,
            (1, 1),
            Refusal(
                "cannot be resent: a person with this email is already Connected with this provider"
            ),
        ),
    ],
)
def test_resend_attempt(
    status: I, waiting: bool, attempts: tuple[int, int], expected: object
) -> None:
    attempt, messages_attempt = attempts
    assert (
        resend_attempt(
            status, attempt=attempt, messages_attempt=messages_attempt, message_waiting=waiting
        )
        == expected
    )


def test_request_only_from_registered_and_accept_only_from_invited() -> None:
    assert after_request(REGISTERED) is INVITED
    assert after_accept(INVITED) is CONNECTED
    assert after_request(SENT) == Refusal(
        "is Sent: a request can only go to a client who registered in the app and is not "
        "connected (status Registered)"
    )
    assert after_accept(REGISTERED) == Refusal(
        "is Registered, not Invited: no request is waiting for an answer"
    )
    for status in (QUEUED, SENT, INVITED, OPTED_OUT, CONNECTED, NEW):
        assert isinstance(after_request(status), Refusal), status
    for status in (QUEUED, SENT, REGISTERED, OPTED_OUT, CONNECTED, NEW):
        assert isinstance(after_accept(status), Refusal), status


BIRTHDAY = dt.date(1990, 1, 2)


@pytest.mark.parametrize(
    ("invitation", "registration", "matched"),
    [
        (("ana@example.org", BIRTHDAY), ("ana@example.org", BIRTHDAY), True),
        ((" Ana@Example.ORG", BIRTHDAY), ("ana@example.org\u00a0", BIRTHDAY), True),
        (("ana@example.org", BIRTHDAY), ("ana@example.org", dt.date(1990, 2, 1)), False),
        (("ana@example.org", BIRTHDAY), ("ana@example.com", BIRTHDAY), False),
        (("ana@example.org", dt.date(1970, 1, 1)), ("ana@example.org", BIRTHDAY), False),
    ],
)
def test_dob_match(invitation: tuple, registration: tuple, matched: bool) -> None:
    assert dob_match(*invitation, *registration) is matched


# (current, matched, other person with the email Connected) -> status after a registration
REGISTRATION = [
    ((SENT, False, False), REGISTERED),
    ((QUEUED, False, False), REGISTERED),
    ((SENT, True, False), CONNECTED),  # Date of Birth Match: approved at once
    ((REGISTERED, True, True), CONNECTED),
    ((SENT, False, True), NEW),  # the guardian whose dependent connected
    ((INVITED, False, True), NEW),
    ((INVITED, False, False), INVITED),  # the provider's request still waits for an answer
    ((NEW, False, True), NEW),
    ((OPTED_OUT, True, False), OPTED_OUT),  # never contacted again, match or not
    ((OPTED_OUT, False, True), OPTED_OUT),
    ((CONNECTED, False, True), CONNECTED),
]


@pytest.mark.parametrize(("given_", "expected"), REGISTRATION)
def test_status_after_registration(given_: tuple, expected: I) -> None:
    current, matched, other = given_
    assert (
        status_after_registration(current, matched=matched, other_person_connected=other)
        is expected
    )
    assert dob_match_connects(current, matched=matched) is (
        matched and current not in (OPTED_OUT, CONNECTED)
    )


NEW_AFTER_ANOTHER_CONNECTS = {
    QUEUED: True,
    SENT: True,
    REGISTERED: True,
    INVITED: True,
    OPTED_OUT: False,
    CONNECTED: False,
    NEW: False,  # already
}
AFTER_APPROVAL = {
    QUEUED: CONNECTED,
    SENT: CONNECTED,
    REGISTERED: CONNECTED,
    INVITED: CONNECTED,
    NEW: CONNECTED,
    CONNECTED: CONNECTED,
    OPTED_OUT: OPTED_OUT,
}


def test_which_invitations_become_new_and_which_connect_on_approval() -> None:
    assert {s: becomes_new(s) for s in I} == NEW_AFTER_ANOTHER_CONNECTS
    assert {s: status_after_approval(s) for s in I} == AFTER_APPROVAL


def test_opt_out_remembers_and_opt_in_restores() -> None:
    assert after_opt_out(SENT) == (OPTED_OUT, SENT)
    assert after_opt_out(CONNECTED) == (OPTED_OUT, CONNECTED)
    assert after_opt_out(OPTED_OUT) is None
    assert after_opt_in(OPTED_OUT, REGISTERED, still_opted_out=False) is REGISTERED
    assert after_opt_in(OPTED_OUT, None, still_opted_out=False) is SENT  # nothing recorded
    assert after_opt_in(OPTED_OUT, REGISTERED, still_opted_out=True) is None  # email still out
    assert after_opt_in(SENT, None, still_opted_out=False) is None


@given(st.sampled_from([s for s in I if s is not OPTED_OUT]))
def test_opt_out_then_opt_in_is_a_round_trip(status: I) -> None:
    change = after_opt_out(status)
    assert change is not None
    new, remembered = change
    assert new is OPTED_OUT
    assert after_opt_in(new, remembered, still_opted_out=False) is status
    assert after_opt_in(new, remembered, still_opted_out=True) is None


@pytest.mark.parametrize(
    ("matched", "requested", "outcome"),
    [
        (True, True, "dob_match"),
        (True, False, "dob_match"),
        (False, True, "pending_request"),
        (False, False, "registered"),
    ],
)
def test_registration_outcome(matched: bool, requested: bool, outcome: str) -> None:
    assert registration_outcome(dob_matched=matched, requested=requested) == outcome
