"""Secrets in Prefect Secret blocks: `openslots prefect register-blocks` writes them once from
the environment (never printing a value), and flow runs read them when their environment does
not set the variable (the environment wins). Against the session's Prefect test harness."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prefect import flow, task
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from openslots.cli import app
from openslots.connectors.prefect_blocks import (
    SECRET_BLOCK_TYPE,
    forget_secret_blocks,
    register_secret_blocks,
)
from openslots.settings import SECRET_BLOCKS, Settings, get_settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
SMTP_PASSWORD = "smtp-pw-Kq81Zr"
SIGNING_KEY = "signing-key-" + "Xj4" * 10


def _delete_blocks() -> None:
    with get_client(sync_client=True) as client:
        for name in SECRET_BLOCKS.values():
            try:
                document = client.read_block_document_by_name(
                    name, SECRET_BLOCK_TYPE, include_secrets=False
                )
            except ObjectNotFound:
                continue
            client.delete_block_document(document.id)
    forget_secret_blocks()


@pytest.fixture(autouse=True)
def no_blocks() -> Iterator[None]:
    """No openslots block before or after: the harness is shared by the whole run, and a
    signing-key block would change the tokens of every later flow test."""
    _delete_blocks()
    yield
    _delete_blocks()


def _statuses(stdout: str) -> dict[str, str]:
    return {block["block"]: block["status"] for block in json.loads(stdout)["blocks"]}


def test_register_blocks_creates_them_once_and_overwrites_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENSLOTS_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("OPENSLOTS_SECRET_KEY", SIGNING_KEY)

    first = runner.invoke(app, ["prefect", "register-blocks", "--json"])
    assert first.exit_code == 0, first.output
    assert _statuses(first.stdout) == {
        "openslots-database-url": "unset",
        "openslots-smtp-password": "created",
        "openslots-twilio-auth-token": "unset",
        "openslots-secret-key": "created",
    }
    again = runner.invoke(app, ["prefect", "register-blocks"])
    assert again.exit_code == 0
    assert "openslots-smtp-password" in again.stdout and "exists" in again.stdout
    assert "--overwrite" in again.stderr
    assert Secret.load("openslots-smtp-password").get() == SMTP_PASSWORD

    monkeypatch.setenv("OPENSLOTS_SMTP_PASSWORD", SMTP_PASSWORD + "-new")
    replaced = runner.invoke(app, ["prefect", "register-blocks", "--overwrite", "--json"])
    assert _statuses(replaced.stdout)["openslots-smtp-password"] == "updated"
    assert Secret.load("openslots-smtp-password").get() == SMTP_PASSWORD + "-new"

    for result in (first, again, replaced):
        assert SMTP_PASSWORD not in result.output and SIGNING_KEY not in result.output


def test_register_blocks_refuses_without_a_secret_or_a_server() -> None:
    nothing = runner.invoke(app, ["prefect", "register-blocks", "--json"])
    assert nothing.exit_code == 1
    assert "nothing to register" in json.loads(nothing.stdout)["error"]

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        no_server = runner.invoke(app, ["prefect", "register-blocks", "--json"])
    assert no_server.exit_code == 1
    assert json.loads(no_server.stdout)["error"].startswith("PREFECT_API_URL is unset")


@task
def _smtp_password_in_a_task() -> bool:
    password = get_settings().smtp_password
    return password is not None and password.get_secret_value() == SMTP_PASSWORD


@flow
def _what_a_flow_run_reads() -> dict[str, object]:
    settings = get_settings()
    return {
        "smtp_password": settings.smtp_password
        == Settings(smtp_password=SMTP_PASSWORD).smtp_password,
        "secret_key_is_the_block": settings.secret_key is not None
        and settings.secret_key.get_secret_value() == SIGNING_KEY,
        "twilio_auth_token": settings.twilio_auth_token,
        "in_a_task": _smtp_password_in_a_task(),
    }


def test_flow_runs_read_a_block_when_the_environment_does_not_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_secret_blocks(Settings(smtp_password=SMTP_PASSWORD, secret_key=SIGNING_KEY))

    assert _what_a_flow_run_reads() == {
        "smtp_password": True,
        "secret_key_is_the_block": True,
        "twilio_auth_token": None,  # no block, no variable
        "in_a_task": True,
    }
    # Outside a flow run (a CLI command, the listener) only the environment counts.
    assert get_settings().smtp_password is None

    monkeypatch.setenv("OPENSLOTS_SMTP_PASSWORD", "from-the-environment")
    assert _what_a_flow_run_reads()["smtp_password"] is False  # the environment wins
    assert _what_a_flow_run_reads()["secret_key_is_the_block"] is True
