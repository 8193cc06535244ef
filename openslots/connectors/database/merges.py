"""Patient merges from the EHR (ADT^A40): one MRN replaces another everywhere."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from openslots.connectors.database.models import Client
from openslots.connectors.database.models import Connection as ConnectionRow


def merge_mrns(conn: Connection, old: str, new: str) -> None:
    """The surviving MRN `new` replaces `old` on connections and client records; where a
    provider already knows `new`, the old client record folds into it (nothing duplicated)."""
    if not old or old == new:
        return
    conn.execute(update(ConnectionRow).where(ConnectionRow.mrn == old).values(mrn=new))
    # One row per provider that knew the old MRN: a handful, not a roster.
    for client_id, provider_id in conn.execute(
        select(Client.id, Client.provider_id).where(Client.client_ref == old)
    ).all():
        survivor = conn.execute(
            select(Client.id).where(Client.provider_id == provider_id, Client.client_ref == new)
        ).scalar_one_or_none()
        if survivor is None:
            conn.execute(update(Client).where(Client.id == client_id).values(client_ref=new))
        else:
            conn.execute(
                update(ConnectionRow)
                .where(ConnectionRow.client_id == client_id)
                .values(client_id=survivor)
            )
            conn.execute(delete(Client).where(Client.id == client_id))
