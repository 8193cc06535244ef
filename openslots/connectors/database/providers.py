"""Providers and their locations: the one place that finds, creates and lists them by name.

Roster imports, HL7 feeds, registrations, the CLI and the API all resolve a provider's name here,
so an unknown name fails with the same message everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from openslots.connectors.database.models import Location, Provider
from openslots.errors import ConfigurationError


@dataclass(frozen=True)
class Target:
    """A provider and one of its locations, as an import or a feed message addresses them."""

    provider_id: int
    location_id: int
    integrated: bool
    provider_created: bool
    location_created: bool


def _unknown_provider(provider: str) -> ConfigurationError:
    return ConfigurationError(
        f"unknown provider {provider!r}; add it with `openslots providers add`"
    )


def provider_id_named(conn: Connection, provider: str) -> int | None:
    """The provider's id, or None when no provider has this name."""
    found = conn.execute(select(Provider.id).where(Provider.name == provider)).scalar_one_or_none()
    return None if found is None else int(found)


def provider_integrated(conn: Connection, provider: str) -> bool | None:
    """Whether the provider is EHR-integrated; None when no provider has this name."""
    found = conn.execute(
        select(Provider.integrated).where(Provider.name == provider)
    ).scalar_one_or_none()
    return None if found is None else bool(found)


def provider_id_for(conn: Connection, provider: str) -> int:
    """The provider's id; an unknown name is a ConfigurationError that names it."""
    found = provider_id_named(conn, provider)
    if found is None:
        raise ConfigurationError(f"unknown provider {provider!r}")
    return found


def location_id_named(conn: Connection, provider_id: int, location: str) -> int | None:
    """The id of the provider's location with this name, or None."""
    found = conn.execute(
        select(Location.id).where(Location.provider_id == provider_id, Location.name == location)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def location_id_for(conn: Connection, provider_id: int, location: str) -> int:
    """The location's id; an unknown name is a ConfigurationError that names it."""
    found = location_id_named(conn, provider_id, location)
    if found is None:
        raise ConfigurationError(f"unknown location {location!r} for this provider")
    return found


def provider_and_location_ids(
    conn: Connection, provider: str, location: str | None
) -> tuple[int, int | None]:
    """Resolve a screen's filter: the provider, and the location when one is named."""
    provider_id = provider_id_for(conn, provider)
    location_id = location_id_for(conn, provider_id, location) if location else None
    return provider_id, location_id


@dataclass(frozen=True, slots=True)
class Feed:
    """An HL7 feed: MSH-3 sending application and MSH-4 sending facility (cut to the columns)."""

    application: str
    facility: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "application", self.application[:180])
        object.__setattr__(self, "facility", self.facility[:180])


def ensure_target(
    conn: Connection,
    provider: str,
    location: str,
    *,
    integrated: bool | None,
    create: bool,
    feed: Feed | None = None,
) -> Target:
    """Find (or, when `create`, make) the provider and location; `integrated=True` marks it.

    With `feed` (a message addressed it), a provider the feed creates is recorded as fed by it
    and `integrated` applies to it only: a message never changes an existing provider (who
    can be alerted is the practice's decision, `providers set-integrated`).
    """
    provider_row = conn.execute(
        select(Provider.id, Provider.integrated).where(Provider.name == provider)
    ).one_or_none()
    provider_created = provider_row is None
    if provider_row is None:
        if not create:
            raise _unknown_provider(provider)
        fed_by = (
            {}
            if feed is None
            else {"feed_application": feed.application, "feed_facility": feed.facility}
        )
        provider_id = conn.execute(
            insert(Provider)
            .values(name=provider, integrated=bool(integrated), **fed_by)
            .returning(Provider.id)
        ).scalar_one()
        is_integrated = bool(integrated)
    else:
        provider_id, is_integrated = provider_row
        if integrated and not is_integrated and feed is None:
            conn.execute(update(Provider).where(Provider.id == provider_id).values(integrated=True))
            is_integrated = True
    location_id = location_id_named(conn, provider_id, location)
    location_created = location_id is None
    if location_id is None:
        if not create:
            raise ConfigurationError(f"unknown location {location!r} for provider {provider!r}")
        location_id = conn.execute(
            insert(Location).values(provider_id=provider_id, name=location).returning(Location.id)
        ).scalar_one()
    return Target(provider_id, location_id, is_integrated, provider_created, location_created)


def providers_with_locations(conn: Connection) -> list[dict[str, Any]]:
    """Every provider by name, each with its locations by name (`providers list`)."""
    rows = conn.execute(
        select(Provider.id, Provider.name, Provider.integrated, Location.id, Location.name)
        .outerjoin(Location, Location.provider_id == Provider.id)
        .order_by(Provider.name, Location.name)
    ).all()
    providers: dict[int, dict[str, Any]] = {}
    for pid, name, integrated, lid, lname in rows:
        entry = providers.setdefault(
            pid, {"id": pid, "name": name, "integrated": integrated, "locations": []}
        )
        if lid is not None:
            entry["locations"].append({"id": lid, "name": lname})
    return list(providers.values())
