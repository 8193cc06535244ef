"""The words of outgoing messages. Pure: names in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")

# An outbox message's idempotency key is its intent's parts joined by KEY_SEPARATOR, so two
# dispatchers writing the same intent collide on the unique key instead of sending twice.
KEY_SEPARATOR = ":"
INVITATION_KEY_PREFIX = "invite"
RESEND_KEY_PREFIX = "resend"  # an automatic resend: one cadence step of one invitation
OFFER_KEY_PREFIX = "offer"


def invitation_key_parts(invitation_id: T, attempt: A, channel: str) -> tuple[str, T, A, str]:
    """The parts of an invitation message's key, in order; `invitation_id` and `attempt` may be
    values or (in a set-based INSERT) the SQL columns that hold them."""
    return (INVITATION_KEY_PREFIX, invitation_id, attempt, str(channel))


def invitation_key(invitation_id: int, attempt: int, channel: str) -> str:
    """The idempotency key of one invitation message.

    >>> invitation_key(7, 1, "email")
    'invite:7:1:email'
    """
    return KEY_SEPARATOR.join(str(p) for p in invitation_key_parts(invitation_id, attempt, channel))


def invitation_key_prefix(invitation_id: int, attempt: int) -> str:
    """What every channel's key of one attempt starts with (a resend reports it).

    >>> invitation_key_prefix(7, 2)
    'invite:7:2'
    """
    return invitation_key(invitation_id, attempt, "").removesuffix(KEY_SEPARATOR)


def attempt_of(key: str) -> str:
    """What the keys of every channel of one attempt share: the key without its channel.

    >>> attempt_of("invite:7:2:sms") == attempt_of("invite:7:2:email") == "invite:7:2"
    True
    """
    return key.rsplit(KEY_SEPARATOR, 1)[0]


def resend_key_parts(invitation_id: T, step_days: A, channel: str) -> tuple[str, T, A, str]:
    """The parts of an automatic resend's key: the invitation and the cadence step (days after
    the first send), so each step goes out once per channel whoever materialises it."""
    return (RESEND_KEY_PREFIX, invitation_id, step_days, str(channel))


def resend_key(invitation_id: int, step_days: int, channel: str) -> str:
    """The idempotency key of one automatic resend message.

    >>> resend_key(7, 21, "sms")
    'resend:7:21:sms'
    """
    return KEY_SEPARATOR.join(str(p) for p in resend_key_parts(invitation_id, step_days, channel))


def is_automatic_resend(key: str) -> bool:
    """Whether an outbox key is a cadence step's (not a first send nor a manual resend).

    >>> is_automatic_resend("resend:7:21:sms"), is_automatic_resend("invite:7:2:sms")
    (True, False)
    """
    return key.startswith(RESEND_KEY_PREFIX + KEY_SEPARATOR)


def offer_key_parts(offer_id: T, channel: str) -> tuple[str, T, str]:
    """The parts of an Open Slots offer message's key (`offer_id` a value or a SQL column)."""
    return (OFFER_KEY_PREFIX, offer_id, str(channel))


def offer_key(offer_id: int, channel: str) -> str:
    """The idempotency key of one offer message.

    >>> offer_key(12, "sms")
    'offer:12:sms'
    """
    return KEY_SEPARATOR.join(str(p) for p in offer_key_parts(offer_id, channel))


class OfferOutcome(StrEnum):
    """A message about a claimed slot (its key's third part)."""

    CONFIRMATION = "confirmation"  # to the winner: it's yours
    UNAVAILABLE = "unavailable"  # to the others who were sent the offer


def offer_outcome_key_parts(
    offer_id: T, outcome: OfferOutcome, channel: str
) -> tuple[str, T, str, str]:
    """The parts of a claimed slot's message key (`offer_id` a value or a SQL column).

    >>> KEY_SEPARATOR.join(map(str, offer_outcome_key_parts(12, OfferOutcome.CONFIRMATION, "sms")))
    'offer:12:confirmation:sms'
    """
    return (OFFER_KEY_PREFIX, offer_id, str(outcome), str(channel))


@dataclass(frozen=True, slots=True)
class InvitationContext:
    """Who is invited to connect with whom. For a dependent, the guardian is the recipient."""

    first_name: str
    last_name: str
    provider: str
    location: str
    guardian_first_name: str | None = None
    guardian_last_name: str | None = None

    @property
    def is_dependent(self) -> bool:
        return bool(self.guardian_first_name)


def invitation_email(ctx: InvitationContext) -> tuple[str, str]:
    """(subject, plain-text body) of an invitation email.

    >>> subject, _ = invitation_email(InvitationContext("Ana", "Ruiz", "Dr. Lee", "Main St"))
    >>> subject
    'Dr. Lee invites you to receive Open Slots alerts'
    """
    subject = f"{ctx.provider} invites you to receive Open Slots alerts"
    if ctx.is_dependent:
        greeting = f"Dear {ctx.guardian_first_name} {ctx.guardian_last_name},"
        whom = f"{ctx.first_name} {ctx.last_name}"
        ask = (
            f"{ctx.provider} ({ctx.location}) invites you to connect on behalf of {whom}, "
            "so that you hear as soon as an earlier appointment slot opens."
        )
        dob_hint = f"{ctx.first_name}'s date of birth"
    else:
        greeting = f"Dear {ctx.first_name} {ctx.last_name},"
        ask = (
            f"{ctx.provider} ({ctx.location}) invites you to connect, so that you hear as soon "
            "as an earlier appointment slot opens."
        )
        dob_hint = "your date of birth"
    body = "\n\n".join(
        [
            greeting,
            ask,
            "Install the SkedgeAlert mobile app and register with this email address and "
            f"{dob_hint}: your connection is then approved at once.",
            "If you do not wish to hear from this practice, reply STOP or use the unsubscribe "
            "link and you will not be contacted again.",
        ]
    )
    return subject, body + "\n"


def invitation_sms(ctx: InvitationContext, *, email_on_file: bool = True) -> str:
    """A text short enough for two SMS segments; without an email on file it asks for the
    app's request to connect (the practice approves it) instead of pointing to an email."""
    who = f"{ctx.first_name}" if ctx.is_dependent else "you"
    how = (
        "the email we have on file"
        if email_on_file
        else f"your date of birth and ask to connect with {ctx.provider} ({ctx.location}): "
        "the practice approves your request"
    )
    return (
        f"{ctx.provider} invites {who} to get Open Slots alerts. Get the SkedgeAlert app and "
        f"register with {how}. Reply STOP to opt out."
    )
