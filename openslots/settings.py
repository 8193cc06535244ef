"""The one settings object: every knob comes from OPENSLOTS_* environment variables or defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration.

    Example:
        >>> Settings(home=Path("/tmp/x")).resolved_database_url()
        'sqlite:////tmp/x/openslots.db'
    """

    model_config = SettingsConfigDict(env_prefix="OPENSLOTS_", extra="ignore")

    home: Path = Field(
        default=Path("openslots-data"),
        description="Working directory for the embedded defaults (SQLite file, outboxes).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in `home`. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    outbox_dir: Path | None = Field(
        default=None, description="Where the file email/SMS backends write; default `home`/outbox."
    )
    email_backend: Literal["file"] = "file"
    sms_backend: Literal["file"] = "file"
    email_from: str = "invitations@openslots.invalid"
    phone_region: str = Field(default="US", description="Region for numbers without a + prefix.")
    chunk_size: int = Field(default=100_000, ge=1, description="Roster rows validated per chunk.")
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
    hl7_batch_seconds: float = Field(
        default=5.0,
        gt=0,
        description="The listener hands stored messages to ingest at least this often.",
    )
    debug_unsafe_errors: bool = Field(
        default=False,
        description="Chain the original exception (which may quote patient data) to step "
        "errors. For debugging on synthetic data only; never in production.",
    )

    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home() / 'openslots.db'}"

    def resolved_outbox_dir(self) -> Path:
        return (self.outbox_dir or self.resolved_home() / "outbox").expanduser().resolve()


def get_settings() -> Settings:
    """Read the settings afresh: cheap, and tests can change the environment between calls."""
    return Settings()
