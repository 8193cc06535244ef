"""lifecycle: registrations, audit log, invitation opt-out memory

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:59:44.924666
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_value", sa.String(length=254), nullable=True),
        sa.Column("to_value", sa.String(length=254), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_entity", ["entity", "entity_id"], unique=False)

    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("mobile_phone", sa.String(length=20), nullable=True),
        sa.Column("dependent_first_name", sa.String(length=100), nullable=True),
        sa.Column("dependent_last_name", sa.String(length=100), nullable=True),
        sa.Column("dependent_date_of_birth", sa.Date(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_registrations_location_id_locations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_registrations_provider_id_providers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
    )
    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_registrations_email_dob", ["email", "date_of_birth"], unique=False
        )

    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_before_opt_out", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_column("requested_at")
        batch_op.drop_column("status_before_opt_out")

    with op.batch_alter_table("registrations", schema=None) as batch_op:
        batch_op.drop_index("ix_registrations_email_dob")

    op.drop_table("registrations")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity")

    op.drop_table("audit_log")
