"""MRN mapping decisions: which roster rows may set which connection's MRN, and which need review.

Candidates come from the database in tiers (1: Client ID = MRN, 2: email + date of birth,
3: first + last name + date of birth; a row only takes its best tier). The rules here decide,
never guess: several people, a shared connection or a different MRN already set go to review.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from openslots.domain.statuses import ConnectionStatus


@dataclass(frozen=True, slots=True)
class Candidate:
    """A roster row (by staging id and line) that matches a connection at some tier."""

    row_id: int
    line: int
    client_ref: str
    connection_id: int
    connection_mrn: str | None
    connection_status: ConnectionStatus
    person_key: str  # who the connection belongs to (email + date of birth), opaque here
    tier: int


@dataclass
class MatchPlan:
    mrn_updates: dict[int, str] = field(default_factory=dict)  # connection id -> MRN to set
    linked: dict[int, str] = field(default_factory=dict)  # connection id -> client_ref to link
    approved_rows: set[int] = field(default_factory=set)  # rows matching an Approved connection
    reviews: list[tuple[int, str]] = field(default_factory=list)  # (line, rule)


def plan_mrn_mapping(candidates: Iterable[Candidate]) -> MatchPlan:
    """Decide MRN updates and reviews for one import.

    >>> c = Candidate(1, 2, "A1", 10, None, ConnectionStatus.PENDING, "p", 2)
    >>> plan_mrn_mapping([c]).mrn_updates
    {10: 'A1'}
    """
    by_row: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        by_row[candidate.row_id].append(candidate)

    plan = MatchPlan()
    usable: list[Candidate] = []
    for matches in by_row.values():
        if any(m.connection_status is ConnectionStatus.APPROVED for m in matches):
            plan.approved_rows.add(matches[0].row_id)
        if len({m.person_key for m in matches}) > 1:
            plan.reviews.append((matches[0].line, "ambiguous_match"))
            continue
        usable.extend(matches)

    rows_per_connection: dict[int, set[str]] = defaultdict(set)
    for candidate in usable:
        rows_per_connection[candidate.connection_id].add(candidate.client_ref)

    flagged: set[tuple[int, str]] = set()
    for candidate in usable:
        if len(rows_per_connection[candidate.connection_id]) > 1:
            flagged.add((candidate.line, "shared_connection"))
        elif candidate.connection_mrn is None:
            plan.mrn_updates[candidate.connection_id] = candidate.client_ref
            plan.linked[candidate.connection_id] = candidate.client_ref
        elif candidate.connection_mrn == candidate.client_ref:
            plan.linked[candidate.connection_id] = candidate.client_ref
        else:
            flagged.add((candidate.line, "mrn_conflict"))
    plan.reviews.extend(sorted(flagged))
    plan.reviews.sort()
    return plan
