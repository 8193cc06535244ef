"""The roster matching rule on hand-written cases: each tier, ambiguity, an Approved client in
invite and sync mode, a shared connection, an MRN conflict, a row matching nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from openslots.domain.roster_matching import (
    KnownConnection,
    RosterRow,
    RowState,
    decide_rows,
)
from openslots.domain.statuses import ConnectionStatus

A, P, S, D = (
    ConnectionStatus.APPROVED,
    ConnectionStatus.PENDING,
    ConnectionStatus.PAUSED,
    ConnectionStatus.DECLINED,
)
DOB, OTHER_DOB = dt.date(1990, 1, 1), dt.date(1985, 6, 6)
ANN, BOB = "ann@example.org", "bob@example.org"
OK, CONNECTED, HELD = RowState.OK, RowState.CONNECTED, RowState.HELD
REJECTED = "approved_connection_exists"


def c(
    cid: int,
    status: ConnectionStatus = P,
    mrn: str | None = None,
    email: str = ANN,
    dob: dt.date = DOB,
    name: str = "ann|lee",
) -> KnownConnection:
    return KnownConnection(cid, status, mrn, email, dob, name)


def r(
    line: int,
    ref: str,
    email: str | None = ANN,
    dob: dt.date = DOB,
    name: str = "ann|lee",
) -> RosterRow:
    return RosterRow(line, ref, email, dob, name)


# (mode, rows, connections) -> {line: (rejected rule, state, reviews, tier, matched ids)}
CASES = {
    "nothing matches: invite": (
        ("invite", [r(2, "R1", email=BOB, name="bob|kim")], [c(1), c(2, A, dob=OTHER_DOB)]),
        {2: (None, OK, set(), None, ())},
    ),
    # Tier 1 - Client ID = MRN, whatever the other details say.
    "tier 1 on the MRN alone": (
        ("invite", [r(2, "R1")], [c(1, mrn="R1", email=BOB, dob=OTHER_DOB, name="x|y")]),
        {2: (None, OK, set(), 1, (1,))},
    ),
    "tier 1 hides an Approved tier-2 match of another person": (
        ("invite", [r(2, "R1")], [c(1, mrn="R1", email=BOB), c(2, A)]),
        {2: (None, OK, set(), 1, (1,))},
    ),
    "a connection without an MRN never matches by MRN": (
        ("invite", [r(2, "R1", email=BOB, name="bob|kim")], [c(1, mrn=None)]),
        {2: (None, OK, set(), None, ())},
    ),
    # Tier 2 - the seed's Date of Birth Match: email + date of birth.
    "tier 2 on email and birthday, names differ": (
        ("invite", [r(2, "R1", name="annie|lee")], [c(1)]),
        {2: (None, OK, set(), 2, (1,))},
    ),
    "tier 2 hides an Approved tier-3 match of another person": (
        ("invite", [r(2, "R1")], [c(1), c(2, A, email=BOB)]),
        {2: (None, OK, set(), 2, (1,))},
    ),
    "same email, other birthday: not tier 2": (
        ("invite", [r(2, "R1", name="x|y")], [c(1, A, dob=OTHER_DOB)]),
        {2: (None, OK, set(), None, ())},
    ),
    # Tier 3 - date of birth + name key.
    "tier 3 on name and birthday, email differs": (
        ("invite", [r(2, "R1", email=BOB)], [c(1)]),
        {2: (None, OK, set(), 3, (1,))},
    ),
    "a feed row without email goes to tier 3": (
        ("sync", [r(2, "R1", email=None)], [c(1)]),
        {2: (None, OK, set(), 3, (1,))},
    ),
    # The seed's rule, and its sync counterpart.
    "Approved: rejected in invite mode": (
        ("invite", [r(2, "R1"), r(3, "R2", email=BOB, name="bob|kim")], [c(1, A)]),
        {2: (REJECTED, None, set(), 2, (1,)), 3: (None, OK, set(), None, ())},
    ),
    "Approved: connected, not invited, in sync mode": (
        ("sync", [r(2, "R1")], [c(1, A)]),
        {2: (None, CONNECTED, set(), 2, (1,))},
    ),
    "Approved by MRN: rejected in invite mode": (
        ("invite", [r(2, "R1", email=BOB)], [c(1, A, mrn="R1")]),
        {2: (REJECTED, None, set(), 1, (1,))},
    ),
    "Pending, Paused, Declined are not Approved": (
        (
            "invite",
            [r(2, "R1"), r(3, "R2", email=BOB), r(4, "R3", dob=OTHER_DOB)],
            [c(1, P), c(2, S, email=BOB), c(3, D, dob=OTHER_DOB)],
        ),
        {
            2: (None, OK, set(), 2, (1,)),
            3: (None, OK, set(), 2, (2,)),
            4: (None, OK, set(), 2, (3,)),
        },
    ),
    # Ambiguity: connections of several people (email + birthday) are never guessed between.
    "twins by name and birthday: held, even with one Approved": (
        ("invite", [r(2, "R1", email="third@example.org")], [c(1, A), c(2, email=BOB)]),
        {2: (None, HELD, {"ambiguous_match"}, 3, (1, 2))},
    ),
    "twins in sync mode: held, not connected": (
        ("sync", [r(2, "R1", email="third@example.org")], [c(1, A), c(2, email=BOB)]),
        {2: (None, HELD, {"ambiguous_match"}, 3, (1, 2))},
    ),
    "one person with two connections is not ambiguous": (
        ("invite", [r(2, "R1")], [c(1, A), c(2, P)]),
        {2: (REJECTED, None, set(), 2, (1, 2))},
    ),
    "one MRN on two people's connections is ambiguous": (
        ("invite", [r(2, "R1")], [c(1, A, mrn="R1"), c(2, A, mrn="R1", email=BOB)]),
        {2: (None, HELD, {"ambiguous_match"}, 1, (1, 2))},
    ),
    # Shared: two rows of the file claim one connection.
    "two rows, one connection: both reviewed, both invited": (
        ("invite", [r(2, "R1", email=BOB), r(3, "R2", email="cy@example.org")], [c(1)]),
        {
            2: (None, OK, {"shared_connection"}, 3, (1,)),
            3: (None, OK, {"shared_connection"}, 3, (1,)),
        },
    ),
    "two rows, one Approved connection, invite: both rejected, nothing shared": (
        ("invite", [r(2, "R1", email=BOB), r(3, "R2", email="cy@example.org")], [c(1, A)]),
        {2: (REJECTED, None, set(), 3, (1,)), 3: (REJECTED, None, set(), 3, (1,))},
    ),
    "two rows, one Approved connection, sync: both connected and shared": (
        ("sync", [r(2, "R1", email=BOB), r(3, "R2", email="cy@example.org")], [c(1, A)]),
        {
            2: (None, CONNECTED, {"shared_connection"}, 3, (1,)),
            3: (None, CONNECTED, {"shared_connection"}, 3, (1,)),
        },
    ),
    "a rejected row claims nothing": (
        # Row 2 is the Approved client (connections 1 and 2 are one person); row 3 matches
        # connection 2 by name alone. In invite mode row 2 is gone, so 2 is not shared.
        ("invite", [r(2, "R1"), r(3, "R2", email=BOB)], [c(1, A, name="annie|lee"), c(2, P)]),
        {2: (REJECTED, None, set(), 2, (1, 2)), 3: (None, OK, set(), 3, (2,))},
    ),
    "the same rows in sync mode share connection 2": (
        ("sync", [r(2, "R1"), r(3, "R2", email=BOB)], [c(1, A, name="annie|lee"), c(2, P)]),
        {
            2: (None, CONNECTED, {"shared_connection"}, 2, (1, 2)),
            3: (None, OK, {"shared_connection"}, 3, (2,)),
        },
    ),
    "an ambiguous row claims nothing": (
        # Row 2 matches the twins 1 and 2; row 3 is connection 1's own client by email.
        ("invite", [r(2, "R1", email="third@example.org"), r(3, "R2")], [c(1), c(2, email=BOB)]),
        {
            2: (None, HELD, {"ambiguous_match"}, 3, (1, 2)),
            3: (None, OK, set(), 2, (1,)),
        },
    ),
    # MRN conflict: the connection already holds another MRN.
    "another MRN on the matched connection": (
        ("invite", [r(2, "R1")], [c(1, mrn="X9")]),
        {2: (None, OK, {"mrn_conflict"}, 2, (1,))},
    ),
    "another MRN on an Approved connection, sync": (
        ("sync", [r(2, "R1", email=BOB)], [c(1, A, mrn="X9")]),
        {2: (None, CONNECTED, {"mrn_conflict"}, 3, (1,))},
    ),
    "another MRN on an Approved connection, invite: the rejection is all": (
        ("invite", [r(2, "R1")], [c(1, A, mrn="X9")]),
        {2: (REJECTED, None, set(), 2, (1,))},
    ),
    "shared wins over the MRN conflict of the same connection": (
        ("invite", [r(2, "R1", email=BOB), r(3, "R2", email="cy@example.org")], [c(1, mrn="X9")]),
        {
            2: (None, OK, {"shared_connection"}, 3, (1,)),
            3: (None, OK, {"shared_connection"}, 3, (1,)),
        },
    ),
    "shared on one connection, conflict on the other of the same person": (
        # Row 2 matches both connections of one person by email; row 3 only connection 2 by
        # name. Connection 1 is row 2's alone, and holds another MRN.
        (
            "sync",
            [r(2, "R1"), r(3, "R2", email=BOB)],
            [c(1, mrn="X9", name="annie|lee"), c(2)],
        ),
        {
            2: (None, OK, {"mrn_conflict", "shared_connection"}, 2, (1, 2)),
            3: (None, OK, {"shared_connection"}, 3, (2,)),
        },
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_hand_written_cases(case: str) -> None:
    (mode, rows, connections), expected = CASES[case]
    decisions = decide_rows(mode, rows, connections)
    got = {
        line: (d.rejected, d.state, set(d.reviews), d.tier, d.matches)
        for line, d in decisions.items()
    }
    assert got == expected


def test_only_ok_rows_may_be_invited() -> None:
    rows = [r(2, "R1"), r(3, "R2", email="third@example.org"), r(4, "R3", email=BOB, name="b|b")]
    connections = [c(1, A), c(2, email="twin@example.org")]
    decisions = decide_rows("sync", rows, connections)
    assert {line: d.may_invite for line, d in decisions.items()} == {2: False, 3: False, 4: True}


def test_the_states_are_staging_states() -> None:
    from openslots.connectors.database.models import ImportMode, StagingState

    assert {s.value for s in RowState} <= {s.value for s in StagingState}
    assert {m.value for m in ImportMode} == {"invite", "sync", "registrations"}
    with pytest.raises(ValueError, match="mode"):  # a registrations batch is not a roster
        decide_rows(ImportMode.REGISTRATIONS, [], [])
    # `ImportMode` itself is accepted (a StrEnum).
    assert decide_rows(ImportMode.SYNC, [r(2, "R1")], [c(1, A)])[2].state is CONNECTED


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        decide_rows("merge", [], [])
