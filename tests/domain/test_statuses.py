"""Who may be alerted: the seed's rule as a pure function, over every combination."""

from __future__ import annotations

import itertools

from openslots.domain.statuses import (
    RESEND_FORBIDDEN,
    ConnectionStatus,
    InvitationStatus,
    eligible_for_alerts,
)


def test_only_approved_with_mrn_for_integrated_and_never_opted_out() -> None:
    for status, integrated, has_mrn, opted_out in itertools.product(
        ConnectionStatus, [False, True], [False, True], [False, True]
    ):
        expected = (
            status is ConnectionStatus.APPROVED and not opted_out and (has_mrn or not integrated)
        )
        assert (
            eligible_for_alerts(status, integrated=integrated, has_mrn=has_mrn, opted_out=opted_out)
            is expected
        ), (status, integrated, has_mrn, opted_out)


def test_resend_forbidden_exactly_for_the_seed_statuses() -> None:
    assert {s.value for s in RESEND_FORBIDDEN} == {"Opted-Out", "Connected", "New"}
    assert InvitationStatus.SENT not in RESEND_FORBIDDEN
