"""Message templates: shipped defaults, a provider's overrides, and the start-up check."""

from __future__ import annotations

from pathlib import Path

import pytest

from openslots.connectors.templates import MessageTemplates
from openslots.domain.messages import InvitationContext, invitation_email, invitation_sms
from openslots.domain.rendering import (
    SAMPLES,
    SMS_OPT_OUT,
    MessageKind,
    ensure_sms_opt_out,
    invitation_variables,
    reply_keyword_problem,
)
from openslots.errors import ConfigurationError
from openslots.settings import Settings

UNSUBSCRIBE = "http://127.0.0.1:8000/unsubscribe/TOKEN"


def _load(directory: Path | None = None) -> MessageTemplates:
    return MessageTemplates.load(Settings(templates_dir=directory))


def _override(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return tmp_path / "templates"


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_kind_renders_email_and_sms(kind: MessageKind) -> None:
    templates = _load()
    email = templates.email(kind, SAMPLES[kind])
    assert email.subject and "\n" not in email.subject
    assert SAMPLES[kind]["unsubscribe_url"] in email.text
    assert f'href="{SAMPLES[kind]["unsubscribe_url"]}"' in email.html
    # The sample's name holds markup: escaped in HTML, verbatim in text.
    assert "O&#39;Patient &lt;b&gt;" in email.html and "<b>" not in email.html
    assert "O'Patient <b>" in email.text
    assert templates.sms(kind, SAMPLES[kind]).endswith(SMS_OPT_OUT)


@pytest.mark.parametrize(
    "ctx",
    [
        InvitationContext("Ana", "Ruiz", "Dr. Lee", "Main St"),
        InvitationContext("Leo", "Ruiz", "Dr. Lee", "Main St", "Ana", "Ruiz"),
    ],
    ids=["adult", "dependent"],
)
@pytest.mark.parametrize("email_on_file", [True, False], ids=["email", "sms-only"])
def test_invitation_keeps_todays_wording(ctx: InvitationContext, email_on_file: bool) -> None:
    kind, variables = invitation_variables(
        ctx,
        public_url="http://127.0.0.1:8000",
        unsubscribe_url=UNSUBSCRIBE,
        email_on_file=email_on_file,
    )
    rendered = _load().email(kind, variables)
    subject, body = invitation_email(ctx)
    assert rendered.subject == subject
    assert rendered.text == f"{body}\nUnsubscribe: {UNSUBSCRIBE}\n"
    text = _load().sms(kind, variables)
    assert text == invitation_sms(ctx, email_on_file=email_on_file)
    # A text to someone known only by phone never points to an email.
    assert ("email" in text) is email_on_file


def test_a_provider_overrides_one_file_and_keeps_the_rest(tmp_path: Path) -> None:
    directory = _override(
        tmp_path, "invitation/subject.txt", "{{ provider }} would like to stay in touch\n"
    )
    templates = _load(directory)
    sample = SAMPLES[MessageKind.INVITATION]
    assert templates.email(MessageKind.INVITATION, sample).subject == (
        "Dr. Example & Partners would like to stay in touch"
    )
    assert "invites you to connect" in templates.email(MessageKind.INVITATION, sample).text


def test_syntax_error_is_refused_with_name_and_line(tmp_path: Path) -> None:
    broken = '{% extends "_layout.html" %}\n{% block content %}\n{% if %}\n'
    directory = _override(tmp_path, "slot_alert/body.html", broken)
    with pytest.raises(ConfigurationError, match=r"slot_alert/body\.html line 3"):
        _load(directory)


def test_unknown_variable_is_refused_with_name_and_line(tmp_path: Path) -> None:
    directory = _override(
        tmp_path,
        "resend/body.txt",
        "Dear {{ first_name }},\n\nYour doctor {{ doctor_name }} says hi.\n{{ unsubscribe_url }}\n",
    )
    with pytest.raises(ConfigurationError, match=r"resend/body\.txt line 3.*doctor_name"):
        _load(directory)


def test_email_without_unsubscribe_link_is_refused(tmp_path: Path) -> None:
    directory = _override(tmp_path, "invitation/body.txt", "Dear {{ first_name }}, hello.\n")
    with pytest.raises(ConfigurationError, match=r"invitation/body\.txt must show the unsubscribe"):
        _load(directory)


def test_multi_line_subject_is_refused(tmp_path: Path) -> None:
    directory = _override(tmp_path, "resend/subject.txt", "Hello\nBcc: someone\n")
    with pytest.raises(ConfigurationError, match="one line"):
        _load(directory)


@pytest.mark.parametrize(
    "text",
    [
        "Your visit is tomorrow. Reply CANCEL to cancel it.",
        "{% if false %}Text 'END' to stop reminders.{% endif %}Your visit is tomorrow.",
    ],
)
def test_sms_asking_for_an_opt_out_keyword_is_refused(tmp_path: Path, text: str) -> None:
    directory = _override(tmp_path, "slot_alert/sms.txt", text)
    with pytest.raises(ConfigurationError, match=r"slot_alert/sms\.txt asks for a reply"):
        _load(directory)


def test_sms_without_the_instruction_gets_it(tmp_path: Path) -> None:
    directory = _override(tmp_path, "slot_unavailable/sms.txt", "{{ provider }}: slot taken.")
    text = _load(directory).sms(MessageKind.SLOT_UNAVAILABLE, SAMPLES[MessageKind.SLOT_UNAVAILABLE])
    assert text == f"Dr. Example & Partners: slot taken. {SMS_OPT_OUT}"


def test_templates_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="OPENSLOTS_TEMPLATES_DIR"):
        _load(tmp_path / "missing")


def test_missing_variable_at_render_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="claim_url"):
        _load().sms(MessageKind.SLOT_ALERT, SAMPLES[MessageKind.INVITATION])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Reply STOP to opt out.", None),
        ("We cancelled your visit. Reply STOP to opt out.", None),
        ("reply “quit” to leave", "QUIT"),
        ("Respond with UNSUBSCRIBE", "UNSUBSCRIBE"),
        ("The weekend ends soon", None),
    ],
)
def test_reply_keyword_rule(text: str, problem: str | None) -> None:
    found = reply_keyword_problem(text)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_opt_out_instruction_not_doubled() -> None:
    assert ensure_sms_opt_out("Hi. Reply STOP to opt out") == "Hi. Reply STOP to opt out"
    assert ensure_sms_opt_out("") == SMS_OPT_OUT
