"""Patient merges from the EHR (ADT^A40): one MRN replaces another at the providers that EHR
feeds (an MRN means something only inside the EHR that assigned it)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, and_, delete, or_, select, update

from openslots.connectors.database.fingerprints import forget_client
from openslots.connectors.database.models import Client, Provider
from openslots.connectors.database.models import Connection as ConnectionRow
from openslots.connectors.database.providers import Feed


def fed_by(feed: Feed) -> ColumnElement[bool]:
    """Providers whose MRNs come from `feed`: the ones recorded as fed by it, and those with no
    feed recorded (created before feeds were recorded, or by hand), which keep taking merges
    from any feed until `providers set-feed` pins them to one."""
    return or_(
        and_(
            Provider.feed_application == feed.application,
            Provider.feed_facility == feed.facility,
        ),
        and_(Provider.feed_application.is_(None), Provider.feed_facility.is_(None)),
    )


def merge_mrns(conn: Connection, old: str, new: str, feed: Feed) -> bool:
    """The surviving MRN `new` replaces `old` on the connections and client records of the
    providers `feed` feeds; where such a provider already knows `new`, the old client record
    folds into it (nothing duplicated). Returns whether anything carried `old` there."""
    if not old or old == new:
        return False
    providers = select(Provider.id).where(fed_by(feed)).scalar_subquery()
    in_feed = ConnectionRow.provider_id.in_(providers)
    matched = conn.execute(
        update(ConnectionRow).where(ConnectionRow.mrn == old, in_feed).values(mrn=new)
    ).rowcount
    # One row per provider that knew the old MRN: a handful, not a roster.
    clients = conn.execute(
        select(Client.id, Client.provider_id).where(
            Client.client_ref == old, Client.provider_id.in_(providers)
        )
    ).all()
    for client_id, provider_id in clients:
        survivor = conn.execute(
            select(Client.id).where(Client.provider_id == provider_id, Client.client_ref == new)
        ).scalar_one_or_none()
        # Their roster rows now describe another record: read them in full next time.
        for changed in (client_id, survivor):
            if changed is not None:
                forget_client(conn, changed)
        if survivor is None:
            conn.execute(update(Client).where(Client.id == client_id).values(client_ref=new))
        else:
            conn.execute(
                update(ConnectionRow)
                .where(ConnectionRow.client_id == client_id)
                .values(client_id=survivor)
            )
            conn.execute(delete(Client).where(Client.id == client_id))
    return bool(matched) or bool(clients)
