"""The one settings object: every knob comes from OPENSLOTS_* environment variables or defaults."""

from __future__ import annotations

import os
import re
import sys
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openslots.domain.cadence import parse_cadence
from openslots.domain.clock import is_time_zone
from openslots.errors import ConfigurationError

# The secrets a flow run may read from a Prefect Secret block (field -> block name) when its
# environment does not set them; `openslots prefect register-blocks` creates the blocks.
SECRET_BLOCKS: dict[str, str] = {
    "database_url": "openslots-database-url",
    "smtp_password": "openslots-smtp-password",
    "twilio_auth_token": "openslots-twilio-auth-token",
    "secret_key": "openslots-secret-key",
}

_QUIET_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class Settings(BaseSettings):
    """Runtime configuration.

    Example:
        >>> Settings(home=Path("/tmp/x")).resolved_database_url()
        'sqlite:////tmp/x/openslots.db'
    """

    # hide_input_in_errors: a rejected secret (a short key) must not be echoed in the error.
    # frozen: get_settings hands one instance to every caller while the environment is the same.
    model_config = SettingsConfigDict(
        env_prefix="OPENSLOTS_", extra="ignore", hide_input_in_errors=True, frozen=True
    )

    home: Path = Field(
        default=Path("openslots-data"),
        description="Data directory of the embedded defaults (SQLite file, outboxes, drop "
        "directories); relative to the working directory. A deployed flow run (a Prefect "
        "worker's) works in the code checkout, so there it must be absolute.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in `home`. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    outbox_dir: Path | None = Field(
        default=None, description="Where the file email/SMS backends write; default `home`/outbox."
    )
    drop_dir: Path | None = Field(
        default=None,
        description="Where `openslots serve` picks up files: roster/PROVIDER/LOCATION/*.csv, "
        "hl7/*, then moves each to processed/ or failed/; default `home`/drop.",
    )
    email_backend: Literal["file", "smtp"] = Field(
        default="file",
        description="`file`: .eml files in the outbox folder (embedded default); "
        "`smtp`: a relay through yagmail (OPENSLOTS_SMTP_*).",
    )
    sms_backend: Literal["file", "twilio"] = Field(
        default="file",
        description="`file`: JSON files in the outbox folder (embedded default); "
        "`twilio`: Twilio's Messages API (OPENSLOTS_TWILIO_*).",
    )
    email_from: str = Field(
        default="invitations@openslots.invalid",
        description="The From address of every email (and the SMTP envelope sender).",
    )
    smtp_host: str | None = Field(default=None, description="SMTP relay host (smtp backend).")
    smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="SMTP port; unset: 465 with OPENSLOTS_SMTP_SSL, 587 with STARTTLS, else 25.",
    )
    smtp_user: str | None = Field(
        default=None,
        description="SMTP AUTH user; unset means the relay takes mail unauthenticated.",
    )
    smtp_password: SecretStr | None = Field(
        default=None, description="SMTP AUTH password (a secret: never logged, never in a repr)."
    )
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the connection with STARTTLS (submission, port 587)."
    )
    smtp_ssl: bool = Field(
        default=False,
        description="Implicit TLS from the first byte (port 465); excludes "
        "OPENSLOTS_SMTP_STARTTLS.",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) trusted for the relay's certificate instead of the "
        "system store (a private relay, or the tests' self-signed certificate).",
    )
    smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Socket timeout for each SMTP command and reply."
    )
    twilio_account_sid: str | None = Field(default=None, description="Twilio account SID (AC...).")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio auth token (a secret: never logged, never in a repr)."
    )
    twilio_from: str | None = Field(
        default=None, description="Sending number in E.164 (or set the messaging service SID)."
    )
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="Twilio Messaging Service SID (MG...), used instead of a number."
    )
    twilio_api_base_url: str = Field(
        default="https://api.twilio.com",
        description="Base URL of the Messages API: a Twilio-compatible provider, or a loopback "
        "server in tests.",
    )
    twilio_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="HTTP timeout of one Messages request; a timeout after the request went out "
        "makes the message `unknown`.",
    )
    templates_dir: Path | None = Field(
        default=None,
        description="A provider's message templates overriding the shipped ones (same file "
        "names); every one is checked at start-up.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where patients reach `openslots web`: the base of every link in a message.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Key that signs the tokens in links (unsubscribe, claim); at least 32 "
        "characters, the same in every process of one installation.",
    )
    unsubscribe_token_days: int = Field(
        default=365, ge=30, description="How long an unsubscribe link keeps working."
    )
    sms_quiet_hours: str = Field(
        default="21:00-08:00",
        description="HH:MM-HH:MM in the location's time zone during which texts wait for the "
        "morning (emails are not held); `off` disables.",
    )
    alert_quiet_hours: str = Field(
        default="21:00-08:00",
        description="HH:MM-HH:MM in the location's time zone during which Open Slots offers "
        "wait for the morning (or are skipped when the slot starts before then); `off` disables.",
    )
    alert_visit_types: dict[str, str] = Field(
        default={},
        description="The visit types patients may see, as a JSON object from the EHR's code "
        '(SIU AIS-3) to the words shown, e.g. {"NP30": "New patient visit"}; an appointment '
        "whose code is not listed shows no visit type (no visit reason leaves the practice).",
    )
    alert_notify_taken: bool = Field(
        default=True,
        description="When a slot is claimed, tell the others who were sent its offer that it "
        "is no longer available (the winner is always sent a confirmation).",
    )
    alert_min_lead_minutes: int = Field(
        default=120,
        ge=0,
        description="No offer for a slot that starts sooner than this; an open slot closes "
        "(`lead_time`) once its start is this near unclaimed.",
    )
    alert_max_per_week: int = Field(
        default=3,
        ge=0,
        description="Open Slots offers one connection receives at most from one provider in any "
        "7 days (beyond it: `contact_cap`); `0` disables the cap.",
    )
    reconcile_after_hours: float = Field(
        default=4,
        gt=0,
        description="A claimed slot not reconciled into the EHR's calendar this long after the "
        "claim is listed by `slots list --unreconciled` and counted in the daily artifact.",
    )
    resend_cadence: str = Field(
        default="21,30,60,90,120",
        description="Days after an invitation's first send on which it is resent while still "
        "Sent (comma-separated, increasing); a provider's own (`providers set-cadence`) wins.",
    )
    default_timezone: str = Field(
        default="America/New_York",
        description="IANA time zone of locations that have none (quiet hours are local).",
    )
    dispatch_retry_base_seconds: float = Field(
        default=30.0, gt=0, description="First retry delay of a refused send; doubles per attempt."
    )
    dispatch_max_attempts: int = Field(
        default=8, ge=1, description="Attempts before a refused message is dead."
    )
    dispatch_connections: int = Field(
        default=4, ge=1, description="Sending threads (one SMTP connection each) per worker."
    )
    email_per_second: float | None = Field(
        default=None, gt=0, description="Email rate limit per worker; unset means none."
    )
    sms_per_second: float | None = Field(
        default=None, gt=0, description="SMS rate limit per worker; unset means none."
    )
    phone_region: str = Field(default="US", description="Region for numbers without a + prefix.")
    chunk_size: int = Field(default=100_000, ge=1, description="Roster rows validated per chunk.")
    roster_skip_unchanged: bool = Field(
        default=True,
        description="Skip roster rows that are exactly as an earlier completed import of the "
        "same provider and location applied them (the nightly re-sync reads only what "
        "changed). false: read, validate and match every row of every file.",
    )
    dispatch_batch_size: int = Field(default=500, ge=1)
    lease_seconds: int = Field(default=300, ge=1)
    priority_labels: list[str] = Field(
        default=["High", "Normal", "Low"],
        description="The practice's own priority labels (JSON list); they never change who "
        "is alerted.",
    )
    hl7_assigning_authority: str | None = Field(
        default=None,
        description="PID-3 assigning authority whose identifier is the MRN when "
        "no identifier has type MR.",
    )
    hl7_default_provider: str | None = Field(
        default=None,
        description="Provider for feed messages without PV1-7 / AIP-3 "
        "(default: the sending facility).",
    )
    hl7_default_location: str | None = Field(
        default=None,
        description="Location for feed messages without PV1-3 / AIL-3 "
        "(default: the sending facility).",
    )
    hl7_batch_size: int = Field(
        default=20_000,
        ge=1,
        description="Stored messages per ingest step; also the listener's hand-over threshold.",
    )
    hl7_lease_seconds: int = Field(
        default=900,
        ge=1,
        description="How long an ingest run holds the messages it claimed (`applying`); after "
        "it, a crashed run's messages are claimed again by the next run.",
    )
    hl7_batch_seconds: float = Field(
        default=5.0,
        gt=0,
        description="The listener hands stored messages to ingest at least this often.",
    )
    prefect_deployment_id: str | None = Field(
        default=None,
        validation_alias="PREFECT__DEPLOYMENT_ID",
        description="Set by a Prefect worker in the flow runs it starts, not by hand: such a "
        "run works in the code checkout the worker pulled, so a relative data path is refused "
        "there instead of writing data into the checkout.",
    )
    debug_unsafe_errors: bool = Field(
        default=False,
        description="Chain the original exception (which may quote patient data) to step "
        "errors. For debugging on synthetic data only; never in production.",
    )

    @field_validator("sms_quiet_hours", "alert_quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str) -> str:
        value = value.strip()
        if value.lower() != "off" and not _QUIET_HOURS.match(value):
            raise ValueError("expected HH:MM-HH:MM (24-hour clock) or `off`")
        return value

    @field_validator("resend_cadence")
    @classmethod
    def _check_resend_cadence(cls, value: str) -> str:
        parse_cadence(value)  # a CadenceError (a ValueError) names the rule broken
        return value.strip()

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError("not an IANA time zone name (e.g. America/Chicago)")
        return value

    @field_validator("public_url", "twilio_api_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_tls_modes(self) -> Settings:
        if self.smtp_ssl and self.smtp_starttls and "smtp_starttls" in self.model_fields_set:
            raise ValueError("OPENSLOTS_SMTP_SSL and OPENSLOTS_SMTP_STARTTLS exclude each other")
        return self

    def resolved_quiet_hours(self) -> tuple[time, time] | None:
        """(start, end) of the SMS quiet hours, or None when `off`.

        >>> Settings(sms_quiet_hours="21:30-07:00").resolved_quiet_hours()
        (datetime.time(21, 30), datetime.time(7, 0))
        """
        return _quiet_window(self.sms_quiet_hours)

    def resolved_alert_quiet_hours(self) -> tuple[time, time] | None:
        """(start, end) of the Open Slots alert quiet hours, or None when `off`.

        >>> Settings(alert_quiet_hours="off").resolved_alert_quiet_hours() is None
        True
        """
        return _quiet_window(self.alert_quiet_hours)

    def resolved_resend_cadence(self) -> tuple[int, ...]:
        """The default resend cadence in days.

        >>> Settings().resolved_resend_cadence()
        (21, 30, 60, 90, 120)
        """
        return parse_cadence(self.resend_cadence)

    def resolved_smtp_starttls(self) -> bool:
        """STARTTLS unless implicit TLS is chosen (a TLS connection needs no upgrade)."""
        return self.smtp_starttls and not self.smtp_ssl

    def resolved_smtp_port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        if self.smtp_ssl:
            return 465
        return 587 if self.smtp_starttls else 25

    def _data_path(self, path: Path, setting: str) -> Path:
        """`path` made absolute against the working directory, except in a deployed flow run,
        whose working directory is the code checkout: there a relative one is refused."""
        path = path.expanduser()
        if not path.is_absolute() and self.prefect_deployment_id:
            raise ConfigurationError(
                f"{setting} is the relative path {path}, and this deployed flow run works in "
                f"the code checkout {Path.cwd()}: set {setting} to an absolute directory "
                "outside it in the worker's environment"
            )
        return path.resolve()

    def resolved_home(self) -> Path:
        """The data directory, absolute.

        >>> Settings(home=Path("/srv/openslots/../data")).resolved_home()
        PosixPath('/srv/data')
        """
        return self._data_path(self.home, "OPENSLOTS_HOME")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'openslots.db'}"

    def resolved_outbox_dir(self) -> Path:
        if self.outbox_dir is not None:
            return self._data_path(self.outbox_dir, "OPENSLOTS_OUTBOX_DIR")
        return self.resolved_home() / "outbox"

    def resolved_drop_dir(self) -> Path:
        if self.drop_dir is not None:
            return self._data_path(self.drop_dir, "OPENSLOTS_DROP_DIR")
        return self.resolved_home() / "drop"

    def resolved_prefect_home(self) -> Path:
        """PREFECT_HOME of the Prefect server `openslots serve` starts (its database, logs)."""
        return self.resolved_home() / "prefect"


def _quiet_window(value: str) -> tuple[time, time] | None:
    if value.lower() == "off":
        return None
    start, end = value.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def get_settings() -> Settings:
    """The settings of the environment as it is now (tests can change it between calls).

    Reading them costs 20-100 ms (pydantic-settings looks every field up in the environment),
    and every task of a flow run reads them: they are read again only when a variable they come
    from has changed (`_environment`).

    In a flow run that reports to a Prefect server (a worker's, `openslots serve`'s), a secret
    the environment leaves unset is read from its Prefect Secret block (`SECRET_BLOCKS`) when
    one exists: the environment wins, then the block. Outside a flow run (CLI commands, the
    listener, the web pages) only the environment counts, and Prefect is never imported here.
    """
    environment = _environment()
    settings = _environment_settings(environment)
    unset = [field for field in SECRET_BLOCKS if getattr(settings, field) is None]
    if not unset or "prefect.context" not in sys.modules:  # no flow has run in this process
        return settings
    from openslots.connectors.prefect_blocks import secrets_from_blocks

    found = secrets_from_blocks([SECRET_BLOCKS[field] for field in unset])
    overrides = tuple(
        (field, found[SECRET_BLOCKS[field]]) for field in unset if SECRET_BLOCKS[field] in found
    )
    return _environment_settings(environment, overrides) if overrides else settings


@lru_cache(maxsize=16)
def _environment_settings(
    environment: tuple[tuple[str, str], ...], overrides: tuple[tuple[str, Any], ...] = ()
) -> Settings:
    """Settings of this environment (the key: Settings reads it itself), with `overrides`
    (secrets from Prefect blocks): a deployed flow run's tasks share one such instance too."""
    return Settings(**dict(overrides))


def _environment() -> tuple[tuple[str, str], ...]:
    """The variables Settings reads: OPENSLOTS_* (matched ignoring case) and the aliases."""
    return tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.upper().startswith("OPENSLOTS_") or name.upper() in ALIASES
        )
    )


ALIASES = {"PREFECT__DEPLOYMENT_ID"}  # validation_alias of a field: not OPENSLOTS_-prefixed
