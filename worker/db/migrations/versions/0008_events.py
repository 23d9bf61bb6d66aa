"""events: one event per final delivery state of a notice

A unique index (not a constraint) so that SQLite needs no table rebuild.

Revision ID: 0008_events
Revises: 0007_webhooks
"""

from __future__ import annotations

from alembic import op

revision = "0008_events"
down_revision = "0007_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_notification_id_type", "events", ["notification_id", "type"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_notification_id_type", "events")
