"""The practice's changes to a provider itself: its HL7 feed, whether it is EHR-integrated, its
name, and merging a provider a feed created into the practice's own. Each one is audited
(entity `provider`); none is ever made by a message."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import aliased

from openslots.connectors.database.lifecycle import audit
from openslots.connectors.database.models import (
    Client,
    ImportBatch,
    Invitation,
    Location,
    OptOut,
    Provider,
    Registration,
    RosterFingerprint,
    RosterVerification,
    Slot,
)
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.providers import Feed, provider_id_for
from openslots.connectors.database.slots import SlotRef
from openslots.errors import ConfigurationError


def set_feed(conn: Connection, provider: str, feed: Feed, actor: str) -> dict[str, Any]:
    """Record which HL7 feed (MSH-3, MSH-4) the provider's MRNs come from: A40 merges of that
    feed, and only those, apply to its connections."""
    provider_id = provider_id_for(conn, provider)
    old = conn.execute(
        select(Provider.feed_application, Provider.feed_facility).where(Provider.id == provider_id)
    ).one()
    conn.execute(
        update(Provider)
        .where(Provider.id == provider_id)
        .values(feed_application=feed.application, feed_facility=feed.facility)
    )
    before = None if old.feed_application is None else f"{old[0]}^{old[1]}"
    audit(
        conn, "provider", provider_id, "feed", before, f"{feed.application}^{feed.facility}", actor
    )
    return {
        "provider_id": provider_id,
        "provider": provider,
        "application": feed.application,
        "facility": feed.facility,
    }


def set_integrated(
    conn: Connection, provider: str, integrated: bool, actor: str, reason: str | None
) -> dict[str, Any]:
    """Mark the provider EHR-integrated (alerts then need an MRN) or not; audited."""
    provider_id = provider_id_for(conn, provider)
    old = bool(
        conn.execute(select(Provider.integrated).where(Provider.id == provider_id)).scalar_one()
    )
    if old != integrated:
        conn.execute(
            update(Provider).where(Provider.id == provider_id).values(integrated=integrated)
        )
        audit(conn, "provider", provider_id, "integrated", old, integrated, actor, reason)
    return {"provider_id": provider_id, "provider": provider, "from": old, "to": integrated}


def rename(conn: Connection, old: str, new: str, actor: str) -> dict[str, Any]:
    """Rename a provider (a feed's "Given Family (ID)" to the practice's name); audited.
    A feed naming the old name again creates a new provider: merge it (`merge`)."""
    provider_id = provider_id_for(conn, old)
    new = new.strip()
    if not new or len(new) > 200:
        raise ConfigurationError("a provider name has 1 to 200 characters")
    if new != old:
        if conn.execute(select(Provider.id).where(Provider.name == new)).first():
            raise ConfigurationError(
                f"a provider named {new!r} exists already; merge into it with "
                "`openslots providers merge`"
            )
        conn.execute(update(Provider).where(Provider.id == provider_id).values(name=new))
        audit(conn, "provider", provider_id, "name", old, new, actor)
    return {"provider_id": provider_id, "from": old, "to": new}


def _rekey_slots(
    conn: Connection, from_id: int, into_id: int, merged_locations: dict[int, int]
) -> None:
    """Slot keys name the provider and location (slots.SlotRef.key, staff slots likewise):
    rewritten for the target, so that its schedule feed finds the moved slots. A key the
    target has already is left as it was (that appointment is the target's own slot)."""
    rows = conn.execute(
        select(
            Slot.id,
            Slot.slot_key,
            Slot.location_id,
            Slot.filler_id,
            Slot.start,
            Slot.duration_minutes,
        ).where(Slot.provider_id == from_id)
    ).all()
    keys: list[dict[str, object]] = []
    for row in rows:
        location_id = merged_locations.get(row.location_id, row.location_id)
        ref = SlotRef(from_id, row.location_id, row.filler_id, row.start, row.duration_minutes)
        staff = f"staff|{from_id}|{row.location_id}|"
        if row.slot_key == ref.key:
            key = SlotRef(into_id, location_id, row.filler_id, row.start, row.duration_minutes).key
        elif row.slot_key.startswith(staff):
            key = f"staff|{into_id}|{location_id}|" + row.slot_key.removeprefix(staff)
        else:
            continue
        if conn.execute(select(Slot.id).where(Slot.slot_key == key)).first() is None:
            keys.append({"sid": row.id, "key": key})
    if keys:
        conn.execute(
            update(Slot).where(Slot.id == bindparam("sid")).values(slot_key=bindparam("key")),
            keys,
        )


@dataclass
class MergeCounts:
    """What a provider merge moved, folded and dropped."""

    provider_id: int = 0
    locations_moved: int = 0
    locations_merged: int = 0  # same name at both: one location, the surviving provider's
    clients_moved: int = 0
    clients_folded: int = 0  # same Client ID at both: the surviving provider's record stays
    invitations_dropped: int = 0  # a folded client invited at both to one location: one stays
    connections_moved: int = 0
    slots_moved: int = 0
    opt_outs_moved: int = 0


def merge(conn: Connection, source: str, target: str, actor: str) -> dict[str, Any]:
    """Move everything of provider `source` to `target`, then delete `source`; audited on the
    target. `target` keeps its own settings (integrated, feed, auto-invite, cadence).

    Conflicts: a location with the same name becomes the target's; a client with the same
    Client ID folds into the target's (its connections follow; where both were invited to one
    location the target's invitation stays and the other, with its messages, goes); an opt-out
    the target has already is kept once. Connections are moved as they are (two connections
    of one person stay two, for the practice to decline one).
    """
    if source == target:
        raise ConfigurationError("a provider cannot be merged into itself")
    from_id = provider_id_for(conn, source)
    into_id = provider_id_for(conn, target)
    counts = MergeCounts(provider_id=into_id)

    # Locations: same name -> the target's location; otherwise the location moves.
    into_locations = dict(
        conn.execute(
            select(Location.name, Location.id).where(Location.provider_id == into_id)
        ).all()
    )
    # Settled roster rows were verified per provider + location: both providers' rows are
    # read in full by their next import (connectors/database/fingerprints.py).
    for settled in (RosterFingerprint, RosterVerification):
        conn.execute(delete(settled).where(settled.provider_id.in_([from_id, into_id])))
    merged_locations: dict[int, int] = {}
    for location_id, name in conn.execute(
        select(Location.id, Location.name).where(Location.provider_id == from_id)
    ).all():
        if name in into_locations:
            merged_locations[location_id] = into_locations[name]
    counts.locations_merged = len(merged_locations)
    _rekey_slots(conn, from_id, into_id, merged_locations)
    for old_location, new_location in merged_locations.items():
        for table in (ConnectionRow, Invitation, Slot):
            conn.execute(
                update(table)
                .where(table.location_id == old_location)
                .values(location_id=new_location)
            )
    counts.locations_moved = conn.execute(
        update(Location)
        .where(Location.provider_id == from_id, Location.id.not_in(list(merged_locations)))
        .values(provider_id=into_id)
    ).rowcount

    # Clients with a Client ID the target knows fold into the target's record.
    survivor = aliased(Client)
    folds = conn.execute(
        select(Client.id, survivor.id)
        .join(survivor, survivor.client_ref == Client.client_ref)
        .where(Client.provider_id == from_id, survivor.provider_id == into_id)
    ).all()
    for old_client, new_client in folds:
        conn.execute(
            update(ConnectionRow)
            .where(ConnectionRow.client_id == old_client)
            .values(client_id=new_client)
        )
        taken = select(Invitation.location_id).where(Invitation.client_id == new_client)
        counts.invitations_dropped += conn.execute(
            delete(Invitation).where(
                Invitation.client_id == old_client, Invitation.location_id.in_(taken)
            )
        ).rowcount
        conn.execute(
            update(Invitation)
            .where(Invitation.client_id == old_client)
            .values(client_id=new_client)
        )
        conn.execute(delete(Client).where(Client.id == old_client))
    counts.clients_folded = len(folds)
    counts.clients_moved = conn.execute(
        update(Client).where(Client.provider_id == from_id).values(provider_id=into_id)
    ).rowcount

    counts.connections_moved = conn.execute(
        update(ConnectionRow)
        .where(ConnectionRow.provider_id == from_id)
        .values(provider_id=into_id)
    ).rowcount
    conn.execute(
        update(Invitation).where(Invitation.provider_id == from_id).values(provider_id=into_id)
    )
    counts.slots_moved = conn.execute(
        update(Slot).where(Slot.provider_id == from_id).values(provider_id=into_id)
    ).rowcount
    for history in (ImportBatch, Registration):
        conn.execute(
            update(history).where(history.provider_id == from_id).values(provider_id=into_id)
        )

    # Opt-outs: the target's own win; the others move (an opt-out is never lost).
    kept = aliased(OptOut)
    duplicate = (
        select(kept.id)
        .where(
            kept.provider_id == into_id,
            kept.channel == OptOut.channel,
            kept.address == OptOut.address,
        )
        .exists()
    )
    conn.execute(delete(OptOut).where(OptOut.provider_id == from_id, duplicate))
    counts.opt_outs_moved = conn.execute(
        update(OptOut).where(OptOut.provider_id == from_id).values(provider_id=into_id)
    ).rowcount

    conn.execute(delete(Location).where(Location.id.in_(list(merged_locations))))
    conn.execute(delete(Provider).where(Provider.id == from_id))
    audit(conn, "provider", into_id, "merge", source, target, actor)
    return {"provider": target, "merged": source} | asdict(counts)
