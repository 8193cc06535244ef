"""What each roster row may do once it is matched to the provider's connections.

The seed: "An error message will be shown … if you're trying to include a client within the bulk
upload that already exists as an Approved Connection for that Provider." Deciding that needs
to know *which* connection a row is, and the answer is never guessed. `decide_rows` is the whole
rule over plain values; `connectors/database/roster.py` `match_connections` decides the same
set-wise in SQL, and tests/tasks/test_roster_matching_property.py keeps the two in agreement.

Matching, in tiers (a row takes the matches of its best tier only, so a row found by its MRN
is never also matched by name):

1. the row's Client ID equals the connection's MRN (an EHR's identifier: the strongest proof);
2. else the same email and date of birth (the seed's Date of Birth Match);
3. else the same date of birth and name key (first + last name, folded as `contact.name_key`).

A *person* is a connection's email + date of birth: one client may hold several connections
(one per location, or registered twice), which is still one person.

Outcomes, in order of precedence:

- `held` + review `ambiguous_match`: the row matches connections of several people. Which
  one it is would be a guess, so nothing follows from the match: no rejection (even when one
  of them is Approved), no invitation, no MRN written.
- rejected `approved_connection_exists` (invite mode): the seed's rule. The client already
  receives Alerts; an invitation would ask them to connect again.
- `connected` (sync mode): the nightly EHR sync sends every patient every night, so a client
  already Approved is expected, not an error; the row refreshes the client record and is not
  invited.
- review `shared_connection`: two rows of the file (different Client IDs) claim one
  connection; which one owns it is for a person to say, so its MRN is not written.
- review `mrn_conflict`: the matched connection already holds another MRN; it is not
  overwritten (the EHR and the app disagree about who this is).
- `ok`: invite (subject to contact details, opt-outs and earlier invitations, decided later).

Rows rejected in invite mode no longer take part: they claim no connection, so they make no
other row's connection shared. The reviews do not stop a non-ambiguous row: it is applied and
invited like any other (a review only holds back the MRN).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from openslots.domain.statuses import ConnectionStatus

APPROVED_CONNECTION_EXISTS = "approved_connection_exists"
INVITE, SYNC = "invite", "sync"  # the values of `ImportMode`


class RowState(StrEnum):
    """Where a matched row stands (the `StagingState` values this rule can give)."""

    OK = "ok"  # apply and invite
    CONNECTED = "connected"  # sync mode, an Approved connection: apply, no invitation
    HELD = "held"  # ambiguous: apply the client record only, for review


class MatchReview(StrEnum):
    """Why a row is applied but a person should look at it (finding severity `review`)."""

    AMBIGUOUS_MATCH = "ambiguous_match"
    SHARED_CONNECTION = "shared_connection"
    MRN_CONFLICT = "mrn_conflict"


@dataclass(frozen=True)
class RosterRow:
    """A validated roster row as staged: values already normalised (email lower-cased,
    `name_key` of the cleaned names). `email` is None for HL7 feed patients without one."""

    line: int
    client_ref: str
    email: str | None
    date_of_birth: dt.date
    name_key: str


@dataclass(frozen=True)
class KnownConnection:
    """One of the provider's connections, as the mobile app and earlier imports left it."""

    id: int
    status: ConnectionStatus
    mrn: str | None
    email: str
    date_of_birth: dt.date
    name_key: str

    @property
    def person(self) -> tuple[str, dt.date]:
        """Who holds the connection: connections with one email + birthday are one client."""
        return (self.email, self.date_of_birth)


@dataclass(frozen=True)
class RowDecision:
    """The rule's answer for one row. `state` is None when the row is rejected."""

    rejected: str | None
    state: RowState | None
    reviews: frozenset[MatchReview] = frozenset()
    tier: int | None = None  # 1, 2 or 3; None when nothing matched
    matches: tuple[int, ...] = field(default=())  # connection ids of the best tier

    @property
    def may_invite(self) -> bool:
        """Not rejected, held or already connected (contact, opt-out and earlier invitations
        are decided when invitations are queued)."""
        return self.state is RowState.OK


def _tier_matches(tier: int, row: RosterRow, c: KnownConnection) -> bool:
    # SQL's `=` is false when either side is NULL: a missing MRN or email matches nothing.
    if tier == 1:
        return c.mrn is not None and c.mrn == row.client_ref
    if tier == 2:
        return row.email is not None and (c.email, c.date_of_birth) == (
            row.email,
            row.date_of_birth,
        )
    return (c.date_of_birth, c.name_key) == (row.date_of_birth, row.name_key)


def matches_of(
    row: RosterRow, connections: Iterable[KnownConnection]
) -> tuple[int | None, list[KnownConnection]]:
    """(tier, matching connections) of the row's best tier, or (None, []) when none matches.

    >>> ann = KnownConnection(1, ConnectionStatus.PENDING, "R9", "ann@example.org",
    ...                       dt.date(1990, 1, 1), "ann|lee")
    >>> matches_of(RosterRow(2, "R1", "x@example.org", dt.date(1990, 1, 1), "ann|lee"), [ann])[0]
    3
    """
    candidates = list(connections)
    for tier in (1, 2, 3):
        found = [c for c in candidates if _tier_matches(tier, row, c)]
        if found:
            return tier, found
    return None, []


def decide_rows(
    mode: str, rows: Sequence[RosterRow], connections: Iterable[KnownConnection]
) -> dict[int, RowDecision]:
    """Each row's decision, by line, in the module docstring's order of precedence.

    `mode` is "invite" (the seed's bulk upload) or "sync" (the EHR roster). Rows are those
    left after in-file duplicates are dropped (Client IDs are unique among them).

    >>> ann = KnownConnection(1, ConnectionStatus.APPROVED, None, "ann@example.org",
    ...                       dt.date(1990, 1, 1), "ann|lee")
    >>> row = RosterRow(2, "R1", "ann@example.org", dt.date(1990, 1, 1), "ann|lee")
    >>> decide_rows("invite", [row], [ann])[2].rejected
    'approved_connection_exists'
    >>> decide_rows("sync", [row], [ann])[2].state
    <RowState.CONNECTED: 'connected'>
    """
    if mode not in (INVITE, SYNC):
        raise ValueError(f"unknown import mode {mode!r}")
    connections = list(connections)
    by_id = {c.id: c for c in connections}
    decisions: dict[int, RowDecision] = {}
    claims: dict[int, set[str]] = defaultdict(set)  # connection id -> Client IDs claiming it
    for row in rows:
        tier, found = matches_of(row, connections)
        ids = tuple(c.id for c in found)
        if len({c.person for c in found}) > 1:
            decisions[row.line] = RowDecision(
                None, RowState.HELD, frozenset({MatchReview.AMBIGUOUS_MATCH}), tier, ids
            )
            continue
        if any(c.status == ConnectionStatus.APPROVED for c in found):
            if mode == INVITE:
                decisions[row.line] = RowDecision(
                    APPROVED_CONNECTION_EXISTS, None, frozenset(), tier, ids
                )
                continue
            state = RowState.CONNECTED
        else:
            state = RowState.OK
        decisions[row.line] = RowDecision(None, state, frozenset(), tier, ids)
        for cid in ids:
            claims[cid].add(row.client_ref)

    shared = {cid for cid, refs in claims.items() if len(refs) > 1}
    by_line = {row.line: row for row in rows}
    for line, decision in decisions.items():
        if decision.state not in (RowState.OK, RowState.CONNECTED):
            continue
        reviews: set[MatchReview] = set()
        for cid in decision.matches:
            mrn = by_id[cid].mrn
            if cid in shared:
                reviews.add(MatchReview.SHARED_CONNECTION)
            elif mrn is not None and mrn != by_line[line].client_ref:
                reviews.add(MatchReview.MRN_CONFLICT)
        if reviews:
            decisions[line] = RowDecision(
                None, decision.state, frozenset(reviews), decision.tier, decision.matches
            )
    return decisions
