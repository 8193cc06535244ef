"""Mobile registrations in bulk: validate a CSV / JSON-lines file, apply each registration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from openslots.connectors.database import roster as roster_repo
from openslots.connectors.database.lifecycle import LifecycleError
from openslots.connectors.database.models import BatchStatus, FindingSeverity, ImportMode
from openslots.connectors.database.registrations import RegistrationInput, register
from openslots.errors import ConfigurationError, RosterFileError
from openslots.resources import resources
from openslots.schemas.registrations import REGISTRATION_COLUMNS, validate_registrations
from openslots.schemas.roster import Rejection, header_key
from openslots.tasks._safety import phi_safe, run_logger

UNKNOWN_PROVIDER = "unknown_provider_or_location"  # the rule of a provider or location not found


@dataclass
class RegistrationCounts:
    batch_id: int = 0  # the import batch keeping the findings (`registrations rejections`)
    registrations: int = 0
    dob_matches: int = 0
    registered: int = 0
    pending_requests: int = 0
    rejected: int = 0
    warnings: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_registrations(path: Path) -> tuple[pd.DataFrame, int]:
    """(frame with canonical columns, line of its first row). CSV, or JSON lines (.jsonl/.ndjson,
    or a file whose first character is `{`)."""
    if not path.is_file():
        raise RosterFileError(f"file not found: {path}")
    head = path.read_bytes()[:1].decode("utf-8", "ignore")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or head == "{":
        records = []
        with path.open(encoding="utf-8-sig") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    raise RosterFileError("not a JSON object", line=number) from None
                if not isinstance(record, dict):
                    raise RosterFileError("not a JSON object", line=number)
                records.append(
                    {k: "" if v is None else str(v) for k, v in record.items()} | {"__line": number}
                )
        frame = pd.DataFrame(records, dtype="str")
        lines = frame.pop("__line").astype(int) if len(frame) else pd.Series(dtype=int)
        frame.index = lines.to_numpy() if len(frame) else frame.index
        return _canonical(frame), 1
    frame = pd.read_csv(
        path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
    )
    return _canonical(frame), 2


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    lookup = {header_key(name): name for name in REGISTRATION_COLUMNS}
    renamed = frame.rename(columns={c: lookup.get(header_key(str(c)), c) for c in frame.columns})
    missing = [
        c for c in ("email", "date_of_birth", "first_name", "last_name") if c not in renamed.columns
    ]
    if missing and len(renamed):
        raise RosterFileError(f"required column missing: {', '.join(missing)}", column=missing[0])
    return renamed


@task(name="apply-registrations", cache_policy=NO_CACHE)
@phi_safe("apply-registrations")
def apply_registrations(path: str) -> RegistrationCounts:
    """Validate every registration, then apply each in its own transaction."""
    res = resources()
    settings, engine = res.settings, res.require_current_schema()
    frame, first_line = read_registrations(Path(path))
    if first_line == 1 and len(frame):  # JSON lines: the index holds each record's line
        lines = list(frame.index)
        frame = frame.reset_index(drop=True)
    else:
        lines = list(range(first_line, first_line + len(frame)))
    with engine.begin() as conn:
        # One import batch per file (mode registrations): its findings are kept like a
        # roster's. Registrations name their own provider each, so the batch names none.
        batch_id = roster_repo.start_batch(
            conn, "", "", False, Path(path).name[:500], ImportMode.REGISTRATIONS, False
        )
    counts = RegistrationCounts(batch_id=batch_id, registrations=len(frame))
    chunk = validate_registrations(frame, 0, settings.phone_region)
    findings: list[Rejection] = [
        Rejection(lines[r.line], r.field, r.rule, r.message, r.severity)
        for r in chunk.rejections + chunk.warnings
    ]
    for row in chunk.accepted.itertuples(index=False):
        try:
            with engine.begin() as conn:
                outcome = register(conn, registration_input(row._asdict()))
        except (LifecycleError, ConfigurationError) as exc:
            findings.append(Rejection(lines[row.line], "provider", UNKNOWN_PROVIDER, str(exc)))
            continue
        if outcome.outcome == "dob_match":
            counts.dob_matches += 1
        elif outcome.outcome == "pending_request":
            counts.pending_requests += 1
        else:
            counts.registered += 1
    errors = [f for f in findings if f.severity == FindingSeverity.ERROR]
    counts.rejected = len({f.line for f in errors})
    counts.warnings = len(findings) - len(errors)
    counts.rejections = [f.as_dict() for f in sorted(errors, key=lambda f: f.line)]
    with engine.begin() as conn:
        roster_repo.record_findings(conn, batch_id, findings)
        roster_repo.finish_batch(
            conn,
            batch_id,
            BatchStatus.COMPLETED,
            total_rows=counts.registrations,
            accepted=counts.registrations - counts.rejected,
            rejected=counts.rejected,
            warnings=counts.warnings,
        )
    run_logger().info(
        "%d registrations: %d DOB matches, %d registered, %d pending requests, %d rejected",
        counts.registrations,
        counts.dob_matches,
        counts.registered,
        counts.pending_requests,
        counts.rejected,
    )
    return counts


def registration_input(row: dict[str, Any]) -> RegistrationInput:
    """A validated, normalised row (see `validate_registrations`) as the lifecycle's input."""

    def optional(name: str) -> str | None:
        value = row.get(name) or ""
        return value or None

    dependent_dob = row.get("dependent_dob")
    return RegistrationInput(
        email=row["email"],
        date_of_birth=row["dob"].date(),
        first_name=row["first_name"],
        last_name=row["last_name"],
        mobile_phone=optional("mobile_phone"),
        provider=optional("provider"),
        location=optional("location"),
        dependent_first_name=optional("dependent_first_name"),
        dependent_last_name=optional("dependent_last_name"),
        dependent_date_of_birth=(
            None if dependent_dob is None or pd.isna(dependent_dob) else dependent_dob.date()
        ),
        availability=optional("availability"),
    )
