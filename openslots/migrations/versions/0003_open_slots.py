"""Open Slots: offers (intents dispatch sends), aware slot start instants, slot status words
checked by the database, location time zones, the practice's Serial order.

Existing slots keep their start as sent (`start`) and gain `starts_at`: an HL7 timestamp
without an offset is wall time in OPENSLOTS_DEFAULT_TIMEZONE (no location has a zone yet); one
that cannot be read keeps its row, with no instant, closed. `filled` becomes `closed` with
reason `booked_in_ehr`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 05:00:41.600208
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOT_STATES = ("open", "claimed", "closed")
# A frozen copy of the rule of this revision (domain.offers.parse_start may change later).
_DTM = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?(?:([+-])(\d{2})(\d{2}))?$"
)


def _instant(text: str, zone: ZoneInfo) -> dt.datetime | None:
    found = _DTM.match(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, sign, oh, om = found.groups()
    try:
        offset: dt.tzinfo = zone
        if sign:
            delta = dt.timedelta(hours=int(oh), minutes=int(om))
            offset = dt.timezone(delta if sign == "+" else -delta)
        at = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
            tzinfo=offset,
        )  # fmt: skip
    except ValueError:
        return None
    return at.astimezone(dt.UTC)


def _convert_slots() -> None:
    from openslots.settings import get_settings

    zone = ZoneInfo(get_settings().default_timezone)
    slots = sa.table(
        "slots",
        sa.column("id", sa.Integer()),
        sa.column("start", sa.String()),
        sa.column("status", sa.String()),
        sa.column("starts_at", sa.DateTime(timezone=True)),
        sa.column("closed_reason", sa.String()),
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(slots.c.id, slots.c.start, slots.c.status)).all():
        starts_at = _instant(row.start or "", zone)
        status, reason = row.status, None
        if row.status == "filled":
            status, reason = "closed", "booked_in_ehr"
        elif row.status not in SLOT_STATES:
            status, reason = "closed", "staff"
        if starts_at is None and status != "closed":
            status, reason = "closed", "lead_time"
        bind.execute(
            slots.update()
            .where(slots.c.id == row.id)
            .values(starts_at=starts_at, status=status, closed_reason=reason)
        )


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("group_number", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "sent",
                "withdrawn",
                "skipped",
                name="offer_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("claim_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_offers_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["slots.id"], name=op.f("fk_offers_slot_id_slots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
        sa.UniqueConstraint(
            "slot_id", "connection_id", name=op.f("uq_offers_slot_id_connection_id")
        ),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index("ix_offers_state_due_at", ["state", "due_at"], unique=False)

    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_order", sa.Integer(), nullable=True))

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offer_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_outbox_offer_id", ["offer_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_offer_id_offers"),
            "offers",
            ["offer_id"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("visit_type", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column(
                "closed_reason",
                sa.Enum(
                    "staff",
                    "booked_in_ehr",
                    "lead_time",
                    name="slot_closed_reason",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "mode",
                sa.Enum(
                    "blast",
                    "serial",
                    name="offer_mode",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                server_default="blast",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("group_size", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("timeout_minutes", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("claimed_offer_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column(
            "start",
            existing_type=sa.VARCHAR(length=24),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
        batch_op.create_index(
            "ix_slots_provider_location_start",
            ["provider_id", "location_id", "starts_at"],
            unique=False,
        )

    _convert_slots()
    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "slot_status", "status IN (" + ", ".join(f"'{s}'" for s in SLOT_STATES) + ")"
        )


def downgrade() -> None:
    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_slots_slot_status"), type_="check")
    op.execute("UPDATE slots SET status = 'filled' WHERE status <> 'open'")
    with op.batch_alter_table("slots", schema=None) as batch_op:
        batch_op.drop_index("ix_slots_provider_location_start")
        batch_op.alter_column(
            "start",
            existing_type=sa.String(length=32),
            type_=sa.VARCHAR(length=24),
            existing_nullable=False,
        )
        batch_op.drop_column("closed_at")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claimed_offer_id")
        batch_op.drop_column("timeout_minutes")
        batch_op.drop_column("group_size")
        batch_op.drop_column("mode")
        batch_op.drop_column("closed_reason")
        batch_op.drop_column("visit_type")
        batch_op.drop_column("starts_at")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_outbox_offer_id_offers"), type_="foreignkey")
        batch_op.drop_index("ix_outbox_offer_id")
        batch_op.drop_column("offer_id")

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("timezone")

    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("alert_order")

    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index("ix_offers_state_due_at")

    op.drop_table("offers")
