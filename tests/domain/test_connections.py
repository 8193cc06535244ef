"""Connections screen rules without a database: status changes, priority labels, MRNs."""

from __future__ import annotations

import pytest

from openslots.domain.connections import (
    approval_connects_invitation,
    clean_mrn,
    mrn_on_approval,
    mrn_refusal,
    priority_refusal,
    status_changes,
)
from openslots.domain.statuses import ConnectionStatus as C


def test_any_status_may_follow_any_other_and_the_same_one_is_no_change() -> None:
    assert status_changes(C.PENDING, C.APPROVED)
    assert status_changes(C.APPROVED, C.PAUSED)
    assert status_changes(C.DECLINED, C.PENDING)
    assert not status_changes(C.APPROVED, C.APPROVED)
    assert not status_changes("Paused", C.PAUSED)  # type: ignore[arg-type]  # a row's value


def test_only_approving_a_connection_from_an_invitation_connects_it() -> None:
    assert approval_connects_invitation(C.APPROVED, has_client=True)
    assert not approval_connects_invitation(C.APPROVED, has_client=False)  # came from the app
    for status in (C.PENDING, C.PAUSED, C.DECLINED):
        assert not approval_connects_invitation(status, has_client=True)


def test_priority_is_one_of_the_practices_labels_or_none() -> None:
    assert priority_refusal("High", ["High", "Low"]) is None
    assert priority_refusal(None, ["High", "Low"]) is None
    assert priority_refusal("high", ["High", "Low"]) == (
        "unknown priority 'high'; the practice's labels are High, Low (OPENSLOTS_PRIORITY_LABELS)"
    )


@pytest.mark.parametrize(
    ("raw", "stored"),
    [(None, None), ("", None), ("   ", None), (" 00042 ", "00042"), ("A-7", "A-7")],
)
def test_clean_mrn(raw: str | None, stored: str | None) -> None:
    assert clean_mrn(raw) == stored


def test_mrn_length() -> None:
    assert mrn_refusal("9" * 64) is None
    assert mrn_refusal("9" * 65) == "MRN is longer than 64 characters"
    assert mrn_refusal(None) is None


def test_approval_keeps_the_staffs_mrn_and_otherwise_maps_the_client_id() -> None:
    assert mrn_on_approval(None, "00001") == "00001"
    assert mrn_on_approval("M-9", "00001") == "M-9"
    assert mrn_on_approval(None, None) is None
