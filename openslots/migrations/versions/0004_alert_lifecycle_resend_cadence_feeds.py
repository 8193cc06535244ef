"""The alert lifecycle (declines, views, availability windows, reconciling claimed slots into
the EHR, conflicts), the automatic resend cadence (per-provider cadence, one row per decided
step), HL7 feeds per provider (A40 merges stay in their EHR), leases for HL7 messages being
applied, heartbeats and an `interrupted` status for import batches, and a `registrations`
import mode (registrations files keep their rejections like rosters).

Existing rows keep their values; every new column is empty (no cadence of its own, no feed,
no windows = any time, nothing viewed, declined or reconciled).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 06:13:23.261910
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BATCH_STATES = ("running", "completed", "failed", "interrupted")
IMPORT_MODES = ("invite", "sync", "registrations")
OLD_BATCH_STATES = ("running", "completed", "failed")
OLD_IMPORT_MODES = ("invite", "sync")


def _replace_check(table: str, name: str, column: str, values: Sequence[str]) -> None:
    """Re-create the CHECK of an enum column with another set of values (SQLite: a table copy)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(f"ck_{table}_{name}"), type_="check")
        batch_op.create_check_constraint(
            name, f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"
        )


def upgrade() -> None:
    op.create_table(
        "invitation_resends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invitation_id", sa.Integer(), nullable=False),
        sa.Column("step_days", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "skipped",
                name="resend_step_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["invitations.id"],
            name=op.f("fk_invitation_resends_invitation_id_invitations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitation_resends")),
        sa.UniqueConstraint(
            "invitation_id", "step_days", name=op.f("uq_invitation_resends_invitation_id_step_days")
        ),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("availability", sa.String(length=200), nullable=True))

    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("viewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_offers_connection_id_sent_at", ["connection_id", "sent_at"], unique=False
        )

    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resend_cadence", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("feed_application", sa.String(length=180), nullable=True))
        batch_op.add_column(sa.Column("feed_facility", sa.String(length=180), nullable=True))

    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reconciled_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("conflict_message_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("conflict_at", sa.DateTime(timezone=True), nullable=True))

    _replace_check("import_batches", "batch_status", "status", BATCH_STATES)
    _replace_check("import_batches", "import_mode", "mode", IMPORT_MODES)


def downgrade() -> None:
    op.execute("UPDATE import_batches SET status = 'failed' WHERE status = 'interrupted'")
    op.execute("DELETE FROM import_batches WHERE mode = 'registrations'")
    _replace_check("import_batches", "import_mode", "mode", OLD_IMPORT_MODES)
    _replace_check("import_batches", "batch_status", "status", OLD_BATCH_STATES)
    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.drop_column("conflict_at")
        batch_op.drop_column("conflict_message_id")
        batch_op.drop_column("reconciled_by")
        batch_op.drop_column("reconciled_at")

    with op.batch_alter_table("providers", schema=None) as batch_op:
        batch_op.drop_column("feed_facility")
        batch_op.drop_column("feed_application")
        batch_op.drop_column("resend_cadence")

    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index("ix_offers_connection_id_sent_at")
        batch_op.drop_column("declined_at")
        batch_op.drop_column("viewed_at")

    with op.batch_alter_table("import_batches", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("worker_id")

    with op.batch_alter_table("hl7_messages", schema=None) as batch_op:
        batch_op.drop_column("lease_expires_at")

    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("availability")

    op.drop_table("invitation_resends")
