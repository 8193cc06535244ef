"""Why a connection is or is not alerted: hand-written cases from the seed, and properties
that hold for every combination of facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openslots.domain.eligibility import (
    AlertReason,
    alert_reason,
    eligible_for_alerts,
    mrn_present,
)
from openslots.domain.statuses import ConnectionStatus

A, P, S, D = (
    ConnectionStatus.APPROVED,
    ConnectionStatus.PENDING,
    ConnectionStatus.PAUSED,
    ConnectionStatus.DECLINED,
)

# (status, integrated, has_mrn, opted_out, at_location) -> reason
CASES = [
    # Seed: "A Connection can only receive Alerts if the Connection Status is Approved".
    ((A, False, False, False, True), "eligible"),  # a plain provider needs no MRN
    ((P, False, True, False, True), "not_approved"),
    ((S, False, True, False, True), "paused"),
    ((D, False, True, False, True), "declined"),
    # Seed: integrated providers need Approved "along with having a Client ID entered".
    ((A, True, True, False, True), "eligible"),
    ((A, True, False, False, True), "no_mrn"),
    ((P, True, False, False, True), "not_approved"),  # approval is missing first
    ((D, True, False, False, True), "declined"),
    # Opted-Out: never contacted again by that provider, whatever the staff chose.
    ((A, False, True, True, True), "opted_out"),
    ((D, True, False, True, True), "opted_out"),
    # A slot at another location of the provider is not theirs.
    ((A, True, True, False, False), "other_location"),
    ((S, True, False, True, False), "other_location"),
]


@pytest.mark.parametrize(("facts", "reason"), CASES)
def test_reason_by_hand(facts: tuple, reason: str) -> None:
    status, integrated, has_mrn, opted_out, at_location = facts
    got = alert_reason(
        status,
        integrated=integrated,
        has_mrn=has_mrn,
        opted_out=opted_out,
        at_location=at_location,
    )
    assert got == reason
    if at_location:  # the wrapper answers for the connection's own location
        assert eligible_for_alerts(
            status, integrated=integrated, has_mrn=has_mrn, opted_out=opted_out
        ) is (reason == "eligible")


def test_reason_values_are_the_issues_words() -> None:
    assert {r.value for r in AlertReason} == {
        "eligible",
        "not_approved",
        "paused",
        "declined",
        "no_mrn",
        "opted_out",
        "other_location",
        "outside_availability",
        "contact_cap",
    }


@pytest.mark.parametrize(
    ("mrn", "present"), [(None, False), ("", False), ("   ", False), ("0", True), (" 7 ", True)]
)
def test_mrn_present(mrn: str | None, present: bool) -> None:
    assert mrn_present(mrn) is present


facts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(list(ConnectionStatus)),
        "integrated": st.booleans(),
        "has_mrn": st.booleans(),
        "opted_out": st.booleans(),
        "at_location": st.booleans(),
    }
)


@given(facts)
def test_only_one_combination_of_obstacles_is_eligible(f: dict) -> None:
    eligible = alert_reason(**f) is AlertReason.ELIGIBLE
    if eligible:
        assert f["status"] is A and f["at_location"] and not f["opted_out"]


@given(facts)
def test_an_opt_out_or_another_location_always_blocks(f: dict) -> None:
    assert alert_reason(**{**f, "opted_out": True}) is not AlertReason.ELIGIBLE
    assert alert_reason(**{**f, "at_location": False}) is AlertReason.OTHER_LOCATION


@given(facts)
def test_an_mrn_or_a_plain_provider_never_takes_an_alert_away(f: dict) -> None:
    before = alert_reason(**f) is AlertReason.ELIGIBLE
    assert (alert_reason(**{**f, "has_mrn": True}) is AlertReason.ELIGIBLE) >= before
    assert (alert_reason(**{**f, "integrated": False}) is AlertReason.ELIGIBLE) >= before


@given(facts)
def test_a_plain_provider_never_answers_no_mrn(f: dict) -> None:
    assert alert_reason(**{**f, "integrated": False}) is not AlertReason.NO_MRN


@given(facts)
def test_the_wrapper_is_the_reason_at_the_location(f: dict) -> None:
    here = {k: v for k, v in f.items() if k != "at_location"}
    assert eligible_for_alerts(**here) is (alert_reason(**here) is AlertReason.ELIGIBLE)


slot_facts = st.tuples(
    facts,
    st.fixed_dictionaries(
        {
            "fits_availability": st.booleans(),
            "recent_offers": st.integers(0, 6),
            "max_per_week": st.integers(0, 4),
        }
    ),
).map(lambda pair: pair[0] | pair[1])


@given(slot_facts)
def test_windows_and_the_cap_only_ever_take_an_alert_away(f: dict) -> None:
    base = {k: f[k] for k in ("status", "integrated", "has_mrn", "opted_out", "at_location")}
    reason = alert_reason(**f)
    if alert_reason(**base) is not AlertReason.ELIGIBLE:
        assert reason is alert_reason(**base)  # the connection's own obstacle is named first
    elif not f["fits_availability"]:
        assert reason is AlertReason.OUTSIDE_AVAILABILITY
    elif f["max_per_week"] and f["recent_offers"] >= f["max_per_week"]:
        assert reason is AlertReason.CONTACT_CAP
    else:
        assert reason is AlertReason.ELIGIBLE


def test_the_cap_counts_up_to_its_limit_and_zero_disables_it() -> None:
    ok = {"status": A, "integrated": False, "has_mrn": False, "opted_out": False}
    assert [alert_reason(**ok, recent_offers=n, max_per_week=3) for n in (2, 3)] == [
        AlertReason.ELIGIBLE,
        AlertReason.CONTACT_CAP,
    ]
    assert alert_reason(**ok, recent_offers=50, max_per_week=0) is AlertReason.ELIGIBLE
