"""Rules of the seed's Connections screen (status, priority, Client ID / MRN), as pure functions.

Who is alerted is `eligibility.py`; what approval does to the client's invitation is
`lifecycle.status_after_approval`.
"""

from __future__ import annotations

from collections.abc import Sequence

from openslots.domain.statuses import ConnectionStatus

MRN_MAX_LENGTH = 64  # the column's width


def status_changes(old: ConnectionStatus, new: ConnectionStatus) -> bool:
    """The seed lets staff pick any status from the drop-down; choosing the current one is no
    change (nothing written, nothing audited)."""
    return ConnectionStatus(old) is not ConnectionStatus(new)


def approval_connects_invitation(new: ConnectionStatus, *, has_client: bool) -> bool:
    """Approving a connection that came from an invitation connects that invitation (seed:
    Connected = Approved on the Connections screen); other changes leave it as it is."""
    return new is ConnectionStatus.APPROVED and has_client


def priority_refusal(label: str | None, labels: Sequence[str]) -> str | None:
    """Priority is the practice's own label (it never changes who is alerted): one of its
    labels, or none at all.

    >>> priority_refusal("Urgent", ["High", "Low"])
    "unknown priority 'Urgent'; the practice's labels are High, Low (OPENSLOTS_PRIORITY_LABELS)"
    """
    if label is None or label in labels:
        return None
    return (
        f"unknown priority {label!r}; the practice's labels are {', '.join(labels)} "
        "(OPENSLOTS_PRIORITY_LABELS)"
    )


def clean_mrn(mrn: str | None) -> str | None:
    """An MRN as stored: trimmed; blank means none.

    >>> clean_mrn("  00042 "), clean_mrn("   ")
    ('00042', None)
    """
    return (mrn or "").strip() or None


def mrn_refusal(mrn: str | None) -> str | None:
    """Why an MRN (already cleaned) cannot be stored, or None."""
    if mrn is not None and len(mrn) > MRN_MAX_LENGTH:
        return f"MRN is longer than {MRN_MAX_LENGTH} characters"
    return None


def mrn_on_approval(existing: str | None, client_ref: str | None) -> str | None:
    """Approving from an invitation maps the roster's Client ID onto the connection as its MRN,
    unless staff already entered one (theirs is kept)."""
    return existing or client_ref
