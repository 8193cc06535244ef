"""Dispatch: invitation intents, leases that name their worker, the dead state, app secrets.

The import stops writing outbox rows: a Queued invitation owes attempt `attempt`, and dispatch
materialises it once (`messages_attempt` records which attempt has its messages). Existing
databases keep their pending outbox rows: each invitation's attempt is what its messages show.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 04:28:13.991083
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = ("pending", "sending", "sent", "failed", "unknown", "cancelled")
NEW_STATES = (*OLD_STATES, "dead")


def _states(states: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


def upgrade() -> None:
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_app_secrets")),
    )
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("messages_attempt", sa.Integer(), server_default="0", nullable=False)
        )
    owed = sa.text("messages_attempt < attempt")
    op.create_index(
        "ix_invitations_owed", "invitations", ["id"], postgresql_where=owed, sqlite_where=owed
    )

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("send_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_invitation_id", ["invitation_id"], unique=False)
        batch_op.drop_constraint(op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.create_check_constraint("outbox_status", _states(NEW_STATES))

    # The attempt each invitation is at is the most messages it has on one channel (a resend
    # added one per channel); those messages exist already, so that attempt is materialised.
    op.execute(
        """
        UPDATE invitations SET
            attempt = COALESCE((SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM outbox o
                                WHERE o.invitation_id = invitations.id
                                GROUP BY o.channel) AS per_channel), 1),
            messages_attempt = COALESCE((SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM outbox o
                                WHERE o.invitation_id = invitations.id
                                GROUP BY o.channel) AS per_channel), 0)
        """
    )


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'dead'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_outbox_outbox_status"), type_="check")
        batch_op.create_check_constraint("outbox_status", _states(OLD_STATES))
        batch_op.drop_index("ix_outbox_invitation_id")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("send_started_at")
        batch_op.drop_column("worker_id")

    op.drop_index("ix_invitations_owed", table_name="invitations")
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_column("messages_attempt")
        batch_op.drop_column("attempt")

    op.drop_table("app_secrets")
