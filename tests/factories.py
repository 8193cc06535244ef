"""Test data builders: synthetic people and roster files, never real patients."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from sqlalchemy import Engine

from openslots.connectors.database.connections import add_connection
from openslots.connectors.database.roster import ensure_target
from openslots.domain.statuses import ConnectionStatus

HEADER = ["Client ID", "First Name", "Last Name", "Date of Birth", "Email", "Mobile Phone"]


def roster_file(
    path: Path,
    rows: list[list[str]],
    header: list[str] | None = None,
    newline: str = "\n",
    encoding: str = "utf-8",
) -> Path:
    """Write a roster CSV exactly as given (header, line endings, encoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle, lineterminator=newline)
        writer.writerow(header or HEADER)
        writer.writerows(rows)
    return path


def person(n: int, **overrides: str) -> list[str]:
    """A valid roster row for synthetic client `n` (HEADER order)."""
    values = {
        "client_id": f"{n:05d}",
        "first_name": f"Test{chr(65 + n % 26)}",
        "last_name": "Example",
        "date_of_birth": (dt.date(1960, 1, 1) + dt.timedelta(days=n % 15_000)).isoformat(),
        "email": f"client{n}@example.org",
        "mobile_phone": f"(415) 555-{n % 10000:04d}",
    }
    values.update(overrides)
    return [
        values[k]
        for k in ("client_id", "first_name", "last_name", "date_of_birth", "email", "mobile_phone")
    ]


def connection(
    engine: Engine,
    provider: str,
    location: str,
    row: list[str],
    *,
    status: ConnectionStatus = ConnectionStatus.PENDING,
    mrn: str | None = None,
    integrated: bool = False,
) -> int:
    """A connection as the mobile app would create it, for the person of a roster `row`."""
    with engine.begin() as conn:
        target = ensure_target(conn, provider, location, integrated=integrated, create=True)
        return add_connection(
            conn,
            provider_id=target.provider_id,
            location_id=target.location_id,
            first_name=row[1],
            last_name=row[2],
            date_of_birth=dt.date.fromisoformat(row[3]),
            email=row[4],
            status=status,
            mrn=mrn,
        )
