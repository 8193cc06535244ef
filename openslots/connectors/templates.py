"""Message templates: the shipped ones, overridden file by file from OPENSLOTS_TEMPLATES_DIR.

`MessageTemplates.load(settings)` renders every template once with synthetic values, so a
provider's broken template stops start-up with its name and line instead of failing a batch at
3 a.m. The HTML part is autoescaped (a name is text, never markup); the environment is
sandboxed because a templates folder is configuration, not code.

Example:
    >>> from openslots.domain.rendering import SAMPLES, MessageKind
    >>> templates = MessageTemplates.load(Settings())
    >>> templates.email(MessageKind.INVITATION, SAMPLES[MessageKind.INVITATION]).subject
    'Dr. Example & Partners invites you to receive Open Slots alerts'
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from openslots.domain.rendering import (
    SAMPLES,
    MessageKind,
    RenderedEmail,
    ensure_sms_opt_out,
    missing_fields,
    reply_keyword_problem,
)
from openslots.errors import ConfigurationError
from openslots.settings import Settings

__all__ = ["MessageTemplates", "RenderedEmail"]

PARTS = ("subject.txt", "body.txt", "body.html", "sms.txt")


def _environment(directory: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if directory is not None:
        loaders.append(jinja2.FileSystemLoader(directory))
    loaders.append(jinja2.PackageLoader("openslots", "templates"))
    return ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        # A misspelt variable must fail the start-up check, not print an empty name.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Loaded once per dispatch run (MessageTemplates.load): no stat() of every file a
        # template extends or includes at each message to see whether it changed.
        auto_reload=False,
    )


def _line_of(exc: BaseException, filename: str | None) -> int | None:
    """The template line where a render failed: jinja2 rewrites tracebacks to template frames."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if filename is not None and frame.f_code.co_filename == filename:
            line = lineno
    return line


class MessageTemplates:
    """Loaded and checked templates; `email()` and `sms()` render one message each."""

    def __init__(self, environment: jinja2.Environment):
        self._env = environment
        self._templates: dict[str, jinja2.Template] = {}

    @classmethod
    def load(cls, settings: Settings) -> MessageTemplates:
        """Load every kind's templates and check them; ConfigurationError names the bad one."""
        directory = settings.templates_dir
        if directory is not None and not directory.is_dir():
            raise ConfigurationError("OPENSLOTS_TEMPLATES_DIR is not a directory")
        templates = cls(_environment(directory))
        for kind in MessageKind:
            templates._check(kind)
        return templates

    def _template(self, name: str) -> jinja2.Template:
        template = self._templates.get(name)
        if template is None:
            template = self._templates[name] = self._env.get_template(name)
        return template

    def _render(self, kind: MessageKind, part: str, variables: Mapping[str, str]) -> str:
        return self._template(f"{kind}/{part}").render(variables)

    def _check(self, kind: MessageKind) -> None:
        sample = SAMPLES[kind]
        rendered: dict[str, str] = {}
        for part in PARTS:
            name = f"{kind}/{part}"
            try:
                rendered[part] = self._render(kind, part, sample)
            except jinja2.TemplateNotFound:
                raise ConfigurationError(f"template {name} is missing") from None
            except Exception as exc:
                filename = getattr(exc, "filename", None) or self._filename(name)
                line = _line_of(exc, filename)
                where = f"{name} line {line}" if line is not None else name
                shown = Path(filename).name if filename else name
                if isinstance(exc, jinja2.TemplateSyntaxError) and exc.name != name:
                    where = f"{name} (via {exc.name or shown} line {exc.lineno})"
                raise ConfigurationError(
                    f"template {where} does not render with the sample values: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        if "\n" in rendered["subject.txt"].strip() or "\r" in rendered["subject.txt"]:
            raise ConfigurationError(f"template {kind}/subject.txt must render to one line")
        for part in ("body.txt", "body.html"):
            if sample["unsubscribe_url"] not in rendered[part]:
                raise ConfigurationError(
                    f"template {kind}/{part} must show the unsubscribe link "
                    "{{ unsubscribe_url }}"
                )
        # Checked on the template source too, so that a branch the sample does not take
        # cannot hide the instruction.
        source = self._source(f"{kind}/sms.txt")
        for text in (source, rendered["sms.txt"]):
            problem = reply_keyword_problem(text)
            if problem is not None:
                raise ConfigurationError(f"template {kind}/sms.txt {problem}")

    def _filename(self, name: str) -> str | None:
        try:
            return self._env.get_template(name).filename
        except Exception:
            return None

    def _source(self, name: str) -> str:
        loader = self._env.loader
        assert loader is not None
        source, _, _ = loader.get_source(self._env, name)
        return source

    def email(self, kind: MessageKind, variables: Mapping[str, str]) -> RenderedEmail:
        """Subject, text and autoescaped HTML of one email."""
        self._require(kind, variables)
        return RenderedEmail(
            subject=self._render(kind, "subject.txt", variables).strip(),
            text=self._render(kind, "body.txt", variables).strip() + "\n",
            html=self._render(kind, "body.html", variables),
        )

    def sms(self, kind: MessageKind, variables: Mapping[str, str]) -> str:
        """One text, always ending with the opt-out instruction."""
        self._require(kind, variables)
        return ensure_sms_opt_out(" ".join(self._render(kind, "sms.txt", variables).split()))

    @staticmethod
    def _require(kind: MessageKind, variables: Mapping[str, str]) -> None:
        missing = missing_fields(kind, variables)
        if missing:
            raise ValueError(f"{kind} needs {', '.join(missing)}")
