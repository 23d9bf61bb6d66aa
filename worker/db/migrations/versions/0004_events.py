"""events: the change feed written in the same transaction as each change

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import worker.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=48), nullable=False),
        sa.Column("subject_type", sa.String(length=24), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("reseller_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", worker.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", worker.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=True),
        sa.Column("transition_id", sa.Integer(), nullable=True),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["pass_id"], ["passes.id"], name=op.f("fk_events_pass_id_passes")),
        sa.ForeignKeyConstraint(["transition_id"], ["transitions.id"],
                                name=op.f("fk_events_transition_id_transitions")),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"],
                                name=op.f("fk_events_notification_id_notifications")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
        sa.UniqueConstraint("transition_id", name=op.f("uq_events_transition_id")),
    )
    op.create_index("ix_events_subject_type_subject_id_seq", "events",
                    ["subject_type", "subject_id", "seq"])
    op.create_index("ix_events_reseller_id_seq", "events", ["reseller_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_reseller_id_seq", "events")
    op.drop_index("ix_events_subject_type_subject_id_seq", "events")
    op.drop_table("events")
