"""What each kind of message is given to render, and the rules its words must keep. Pure.

Templates (openslots/templates/<kind>/) receive plain string variables; the names each kind
needs are listed in `FIELDS`, and `SAMPLES` holds synthetic values with which every template is
rendered once at start-up. The SMS rules live here because they are the law of the channel,
not of one template: every text ends with the opt-out instruction, and no text asks people to
reply with a carrier opt-out keyword for any other purpose.

Example:
    >>> ensure_sms_opt_out("Dr. Lee has an open slot tomorrow.")
    'Dr. Lee has an open slot tomorrow. Reply STOP to opt out.'
    >>> reply_keyword_problem("Reply CANCEL to cancel your appointment")
    'asks for a reply with the opt-out keyword CANCEL'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from openslots.domain.messages import InvitationContext


class MessageKind(StrEnum):
    """One folder of templates each."""

    INVITATION = "invitation"
    DEPENDENT_INVITATION = "dependent_invitation"
    RESEND = "resend"
    PROVIDER_REQUEST = "provider_request"  # the seed's "Provider Initiated Request" (Invited)
    SLOT_ALERT = "slot_alert"
    SLOT_CONFIRMED = "slot_confirmed"  # to the patient whose claim won
    SLOT_UNAVAILABLE = "slot_unavailable"


SMS_OPT_OUT = "Reply STOP to opt out."

# Carrier and Twilio opt-out keywords other than STOP: a text that asks for one of these as a
# reply ("reply CANCEL to cancel your visit") unsubscribes the patient instead.
OPT_OUT_KEYWORDS = ("STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")
_REPLY_KEYWORD = re.compile(
    r"\b(?:reply|text|respond|send)\b\W+(?:with\W+)?[\"'“‘]?("
    + "|".join(OPT_OUT_KEYWORDS)
    + r")\b",
    re.IGNORECASE,
)

_COMMON = ("first_name", "last_name", "provider", "location", "public_url")
# `email_on_file` is "yes" or "": a text to someone we know only by phone must not point to an
# email (a feed patient without one is invited by SMS alone).
_INVITING = (*_COMMON, "unsubscribe_url", "email_on_file")
FIELDS: Mapping[MessageKind, tuple[str, ...]] = {
    MessageKind.INVITATION: _INVITING,
    MessageKind.DEPENDENT_INVITATION: (*_INVITING, "guardian_first_name", "guardian_last_name"),
    MessageKind.RESEND: _INVITING,
    MessageKind.PROVIDER_REQUEST: _INVITING,
    MessageKind.SLOT_ALERT: (
        *_COMMON,
        "slot_start",
        "slot_minutes",
        "visit_type",  # "" unless the practice chose to show one
        "claim_url",
        "unsubscribe_url",
    ),
    MessageKind.SLOT_CONFIRMED: (*_COMMON, "slot_start", "slot_minutes", "unsubscribe_url"),
    MessageKind.SLOT_UNAVAILABLE: (*_COMMON, "slot_start", "unsubscribe_url"),
}

# Synthetic values only (never a real person); the HTML-looking name proves escaping works.
_SAMPLE_BASE = {
    "first_name": "Sample",
    "last_name": "O'Patient <b>",
    "provider": "Dr. Example & Partners",
    "location": "Main Street Clinic",
    "public_url": "http://127.0.0.1:8000",
    "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/SAMPLE-TOKEN",
}
_SAMPLE_INVITING = {**_SAMPLE_BASE, "email_on_file": "yes"}
SAMPLES: Mapping[MessageKind, Mapping[str, str]] = {
    MessageKind.INVITATION: _SAMPLE_INVITING,
    MessageKind.DEPENDENT_INVITATION: {
        **_SAMPLE_INVITING,
        "guardian_first_name": "Guardian",
        "guardian_last_name": "Example",
    },
    MessageKind.RESEND: _SAMPLE_INVITING,
    MessageKind.PROVIDER_REQUEST: _SAMPLE_INVITING,
    MessageKind.SLOT_ALERT: {
        **_SAMPLE_BASE,
        "slot_start": "Tue 4 Mar 2025, 9:30 AM",
        "slot_minutes": "30",
        "visit_type": "New patient visit",
        "claim_url": "http://127.0.0.1:8000/claim/SAMPLE-TOKEN",
    },
    MessageKind.SLOT_CONFIRMED: {
        **_SAMPLE_BASE,
        "slot_start": "Tue 4 Mar 2025, 9:30 AM",
        "slot_minutes": "30",
    },
    MessageKind.SLOT_UNAVAILABLE: {**_SAMPLE_BASE, "slot_start": "Tue 4 Mar 2025, 9:30 AM"},
}


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def ensure_sms_opt_out(text: str) -> str:
    """The text, ending with the opt-out instruction (added when a template left it out)."""
    text = text.strip()
    if text.rstrip(".").endswith(SMS_OPT_OUT.rstrip(".")):
        return text
    return f"{text} {SMS_OPT_OUT}" if text else SMS_OPT_OUT


def reply_keyword_problem(text: str) -> str | None:
    """The rule a text breaks by asking for an opt-out keyword as a reply, or None."""
    found = _REPLY_KEYWORD.search(text)
    if found is None:
        return None
    return f"asks for a reply with the opt-out keyword {found.group(1).upper()}"


def link(public_url: str, path: str, token: str) -> str:
    """`{public_url}/{path}/{token}`; the token is URL-safe by construction (domain.tokens).

    >>> link("http://127.0.0.1:8000/", "unsubscribe", "abc.def")
    'http://127.0.0.1:8000/unsubscribe/abc.def'
    """
    return f"{public_url.rstrip('/')}/{path}/{token}"


def invitation_variables(
    ctx: InvitationContext, *, public_url: str, unsubscribe_url: str, email_on_file: bool = True
) -> tuple[MessageKind, dict[str, str]]:
    """The kind and variables of an invitation, from today's InvitationContext;
    `email_on_file` says whether the invitation has an email (its texts then refer to it)."""
    variables = {
        "email_on_file": "yes" if email_on_file else "",
        "first_name": ctx.first_name,
        "last_name": ctx.last_name,
        "provider": ctx.provider,
        "location": ctx.location,
        "public_url": public_url,
        "unsubscribe_url": unsubscribe_url,
    }
    if ctx.is_dependent:
        variables["guardian_first_name"] = ctx.guardian_first_name or ""
        variables["guardian_last_name"] = ctx.guardian_last_name or ""
        return MessageKind.DEPENDENT_INVITATION, variables
    return MessageKind.INVITATION, variables


def missing_fields(kind: MessageKind, variables: Mapping[str, str]) -> list[str]:
    """Names a kind needs that `variables` lacks (a programming error in the caller)."""
    return [name for name in FIELDS[kind] if name not in variables]
