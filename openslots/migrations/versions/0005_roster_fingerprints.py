"""Roster fingerprints: the nightly re-sync skips file rows that are exactly as a completed
import left them (`roster_fingerprints`, one per settled row of a provider + location), checked
against the connections changed since the last import (`roster_verifications`); staged rows
carry their fingerprint (`roster_staging.row_hash`).

Existing rows keep their values; both new tables start empty, so the first import after the
upgrade reads every row as before and settles them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:00:42.748538
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "roster_fingerprints",
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("settled_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(
            "provider_id", "location_id", "row_hash", name=op.f("pk_roster_fingerprints")
        ),
    )
    with op.batch_alter_table("roster_fingerprints", schema=None) as batch_op:
        batch_op.create_index("ix_roster_fingerprints_client_id", ["client_id"], unique=False)

    op.create_table(
        "roster_verifications",
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["locations.id"],
            name=op.f("fk_roster_verifications_location_id_locations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name=op.f("fk_roster_verifications_provider_id_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "provider_id", "location_id", "mode", name=op.f("pk_roster_verifications")
        ),
    )
    with op.batch_alter_table("roster_staging", schema=None) as batch_op:
        batch_op.add_column(sa.Column("row_hash", sa.BigInteger(), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        # Derived data (no foreign keys either: see the model): after a crash PostgreSQL
        # empties it and the next import reads every row again, which is correct; the WAL for
        # a million fingerprints buys nothing.
        op.execute("ALTER TABLE roster_fingerprints SET UNLOGGED")


def downgrade() -> None:
    with op.batch_alter_table("roster_staging", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
    op.drop_table("roster_verifications")
    with op.batch_alter_table("roster_fingerprints", schema=None) as batch_op:
        batch_op.drop_index("ix_roster_fingerprints_client_id")
    op.drop_table("roster_fingerprints")
