"""HL7 messages: the database, not a lookup, keeps a message from being stored twice.

A redelivery was recognised by looking stored messages up before the insert; two writers (the
MLLP listener and a file drop, or two listeners) storing the same message at the same moment
both missed the other's row and both inserted it. A partial unique index on the identity
(control id, sending application, sending facility, content hash) for non-empty control ids
(an empty control id is never a duplicate; a reused control id with other content has another
hash, so it is still stored and flagged) now makes the second insert a conflict, which the
store counts as a redelivery. It replaces `ix_hl7_messages_identity` (the same columns, in
the same order): the redelivery lookups by control id say `control_id <> ''` in their text,
so they use it, and every stored message updates three indexes, not four.

Duplicates an old database already holds are resolved first, losing nothing that was applied:
of each identity's copies the first applied one is kept (the lowest id when none was applied),
and every other copy is deleted. A copy that was not applied (stored, applying: it would be
applied a second time; error, ignored: its bytes are the keeper's) holds nothing the keeper
does not; a second applied copy records the same bytes applied to the same effect, and the
keeper says so. Nothing refers to hl7_messages rows by id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IDENTITY = ["control_id", "sending_application", "sending_facility", "content_hash"]


def upgrade() -> None:
    # The keeper of each identity: its first applied copy, else its first copy. A row whose
    # identity has a keeper other than itself goes (both databases run this as written).
    op.execute(
        """
        DELETE FROM hl7_messages
        WHERE control_id <> '' AND id <> (
            SELECT k.id FROM hl7_messages k
            WHERE k.control_id = hl7_messages.control_id
                AND k.sending_application = hl7_messages.sending_application
                AND k.sending_facility = hl7_messages.sending_facility
                AND k.content_hash = hl7_messages.content_hash
            ORDER BY CASE WHEN k.status = 'applied' THEN 0 ELSE 1 END, k.id
            LIMIT 1
        )
        """
    )
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.create_index(
            "uq_hl7_messages_identity",
            IDENTITY,
            unique=True,
            sqlite_where=sa.text("control_id <> ''"),
            postgresql_where=sa.text("control_id <> ''"),
        )
        batch_op.drop_index("ix_hl7_messages_identity")


def downgrade() -> None:
    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.create_index("ix_hl7_messages_identity", IDENTITY, unique=False)
        batch_op.drop_index("uq_hl7_messages_identity")
