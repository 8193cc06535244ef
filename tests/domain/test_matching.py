"""MRN mapping decisions (pure): never guess, send doubt to review."""

from __future__ import annotations

from openslots.domain.matching import Candidate, plan_mrn_mapping
from openslots.domain.statuses import ConnectionStatus

P, A = ConnectionStatus.PENDING, ConnectionStatus.APPROVED


def cand(row: int, ref: str, conn: int, mrn: str | None = None, status=P, person="p1", tier=2):
    return Candidate(row, row + 1, ref, conn, mrn, status, person, tier)


def test_sets_mrn_when_connection_has_none() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10)])
    assert plan.mrn_updates == {10: "A1"}
    assert plan.reviews == []


def test_same_person_at_two_locations_is_not_ambiguous() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10), cand(1, "A1", 11)])
    assert plan.mrn_updates == {10: "A1", 11: "A1"}


def test_several_people_go_to_review() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10, person="p1"), cand(1, "A1", 11, person="p2")])
    assert plan.mrn_updates == {}
    assert plan.reviews == [(2, "ambiguous_match")]


def test_different_mrn_is_never_overwritten() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10, mrn="OTHER")])
    assert plan.mrn_updates == {}
    assert plan.reviews == [(2, "mrn_conflict")]


def test_same_mrn_links_without_update() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10, mrn="A1", tier=1)])
    assert plan.mrn_updates == {}
    assert plan.linked == {10: "A1"}
    assert plan.reviews == []


def test_two_rows_claiming_one_connection_both_go_to_review() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10), cand(2, "B2", 10)])
    assert plan.mrn_updates == {}
    assert plan.reviews == [(2, "shared_connection"), (3, "shared_connection")]


def test_approved_rows_are_reported() -> None:
    plan = plan_mrn_mapping([cand(1, "A1", 10, status=A), cand(2, "B2", 11)])
    assert plan.approved_rows == {1}
