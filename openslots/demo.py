"""`openslots demo`: the whole pipeline on synthetic patients, with embedded defaults."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from openslots.connectors.database import upgrade_database
from openslots.connectors.database.connections import (
    add_connection,
    count_connections_of_provider,
)
from openslots.connectors.database.providers import ensure_target
from openslots.domain.statuses import ConnectionStatus
from openslots.reports import batch_report
from openslots.resources import resources
from openslots.synthetic import messy_rows, people, write_roster

PROVIDERS: tuple[tuple[str, str, bool, Literal["invite", "sync"], str, str], ...] = (
    # (provider, location, integrated, mode, file, id prefix)
    ("Riverside Family Practice", "Downtown Clinic", True, "sync", "riverside.csv", "R"),
    ("Lakeside Pediatrics", "North Campus", False, "invite", "lakeside.csv", "L"),
)


def run_demo(directory: Path, clients: int) -> dict[str, Any]:
    from openslots.flows.dispatch import dispatch
    from openslots.flows.roster_sync import roster_sync

    directory.mkdir(parents=True, exist_ok=True)
    upgrade_database()
    imports = []
    for index, (provider, location, integrated, mode, file, prefix) in enumerate(PROVIDERS):
        roster = list(
            people(
                clients,
                seed=index + 1,
                id_prefix=prefix,
                dependents=0.4 if not integrated else 0.05,
            )
        )
        rows = [p.row() for p in roster] + messy_rows()
        path = directory / "rosters" / file
        write_roster(path, rows)
        if integrated:
            _register_some(provider, location, roster)
        summary = roster_sync(str(path), provider, location, mode, False, integrated)
        report = batch_report(int(str(summary["batch_id"])))
        imports.append(
            {"provider": provider, "location": location, "file": str(path), "mode": mode} | report
        )
    sent = dispatch()
    settings = resources().settings
    outbox = settings.resolved_outbox_dir()
    return {
        "directory": str(directory),
        "database": settings.resolved_database_url(),
        "imports": imports,
        "dispatch": sent,
        "email_dir": str(outbox / "email"),
        "sms_dir": str(outbox / "sms"),
    }


def _register_some(provider: str, location: str, roster: list[Any]) -> None:
    """As if some patients had already registered in the mobile app and asked to connect:
    every fifth is Approved without an MRN yet, every seventh Pending."""
    with resources().engine.begin() as conn:
        target = ensure_target(conn, provider, location, integrated=True, create=True)
        # Connections already there: the demo ran here before and the app's users registered.
        if count_connections_of_provider(conn, target.provider_id):
            return
        for n, person in enumerate(roster):
            if n % 5 and n % 7:
                continue
            add_connection(
                conn,
                provider_id=target.provider_id,
                location_id=target.location_id,
                first_name=person.first_name,
                last_name=person.last_name,
                date_of_birth=dt.date.fromisoformat(person.date_of_birth),
                email=person.email,
                status=ConnectionStatus.APPROVED if n % 5 == 0 else ConnectionStatus.PENDING,
            )
