"""What an inbound text asks for (opt out, opt back in, nothing) and which number it is. Pure.

The keywords are the carriers' and Twilio's: Twilio itself stops delivering to a number that
sent one of the opt-out words, so honouring the same set keeps our opt-outs and theirs in step
(a STOP we ignored would only come back later as Twilio error 21610). Only a whole body counts:
"stop by tomorrow" is a conversation, not an opt-out.

Example:
    >>> inbound_action("  stop ")
    <InboundAction.OPTED_OUT: 'opted_out'>
    >>> inbound_action("Unstop"), inbound_action("please stop")
    (<InboundAction.OPTED_IN: 'opted_in'>, <InboundAction.IGNORED: 'ignored'>)
    >>> phone_key("(415) 555-0101", "US")
    '+14155550101'
"""

from __future__ import annotations

from enum import StrEnum

import phonenumbers

from openslots.domain.rendering import OPT_OUT_KEYWORDS

__all__ = ["OPT_IN_WORDS", "OPT_OUT_WORDS", "InboundAction", "inbound_action", "phone_key"]

OPT_OUT_WORDS = frozenset({"STOP", *OPT_OUT_KEYWORDS})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})


class InboundAction(StrEnum):
    """What an inbound text did (the `action` the CLI and the API report)."""

    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    IGNORED = "ignored"


def inbound_action(body: str) -> InboundAction:
    """Opt out, opt in, or nothing, from the whole trimmed body in any case."""
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return InboundAction.OPTED_OUT
    if word in OPT_IN_WORDS:
        return InboundAction.OPTED_IN
    return InboundAction.IGNORED


def phone_key(raw: str, region: str) -> str | None:
    """E.164 of any possible number (mobile, toll-free, landline), or None.

    Lenient on purpose: our own sending number may be toll-free, and an opt-out must be
    recorded for whatever number sent it; for a valid mobile this equals `phone.to_e164`, the
    form stored on clients, so the opt-out matches them.
    """
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
