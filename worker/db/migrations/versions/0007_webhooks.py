"""webhooks: endpoints and per (event, endpoint) delivery rows

Revision ID: 0007_webhooks
Revises: 0006_lifecycle
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import worker.db.types

revision = "0007_webhooks"
down_revision = "0006_lifecycle"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("first_seq", SEQ, nullable=False),
        sa.Column("enqueued_through", SEQ, nullable=False),
        sa.Column("created_at", worker.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", worker.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", SEQ, autoincrement=True, nullable=False),
        sa.Column("event_seq", SEQ, nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", worker.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_until", worker.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", worker.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", worker.db.types.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["event_seq"], ["events.seq"],
                                name=op.f("fk_webhook_deliveries_event_seq_events")),
        sa.ForeignKeyConstraint(["endpoint"], ["webhook_endpoints.name"],
                                name=op.f("fk_webhook_deliveries_endpoint_webhook_endpoints")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("event_seq", "endpoint",
                            name=op.f("uq_webhook_deliveries_event_seq_endpoint")),
    )
    op.create_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries",
                    ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
