"""Every option and argument of every command says what it is in `--help`, and every choice
(status, state, mode) matches whatever its case: a new command that forgets fails here."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

from openslots.cli import app


def commands(group: Any, path: str = "openslots") -> list[tuple[str, Any]]:
    """(command line, command) of the app and every command under it (Typer vendors click)."""
    found = [(path, group)]
    if isinstance(getattr(group, "commands", None), dict):
        for name, command in group.commands.items():
            found += commands(command, f"{path} {name}")
    return found


def test_every_option_and_argument_has_help_text() -> None:
    missing = [
        f"{path}: {param.name}"
        for path, command in commands(typer.main.get_command(app))
        for param in command.params
        if not getattr(param, "help", None) and param.name != "help"
    ]
    assert missing == []


def test_every_choice_matches_whatever_its_case() -> None:
    choices = [
        (path, param.name, param.type_descriptor)
        for path, command in commands(typer.main.get_command(app))
        for param in command.params
        if getattr(getattr(param, "type_descriptor", None), "is_choice", False)
    ]
    assert len(choices) >= 5  # the check sees them (Typer's own internals may rename)
    assert [f"{path}: {name}" for path, name, desc in choices if desc.case_sensitive] == []


def test_string_statuses_match_whatever_their_case_and_unknown_ones_are_refused(db) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["connections", "list", "--provider", "P", "--status", "approved"])
    assert "unknown status" not in listed.stderr
    refused = runner.invoke(app, ["invitations", "list", "--provider", "P", "--status", "gone"])
    assert refused.exit_code == 2
    assert "Queued, Sent, Registered, Invited, Opted-Out, Connected, New" in refused.stderr
