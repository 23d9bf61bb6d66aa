"""messages: a notice's built message in a table of its own; the unused events index goes

A claim or an outcome rewrites the notification's row; SQLite rewrites a whole row,
overflow pages included, so a message kept in that row was written again at each step.
Only the messages of notices still waiting are carried over: the others are not read
again. `ALTER TABLE … DROP COLUMN` (SQLite 3.35 and later, PostgreSQL) needs no table
rebuild. `ix_events_reseller_id_seq` was read by no query.

Revision ID: 0009_messages
Revises: 0008_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_messages"
down_revision = "0008_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_messages",
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("message_bytes", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"], ondelete="CASCADE",
                                name="fk_notification_messages_notification_id_notifications"),
        sa.PrimaryKeyConstraint("notification_id", name="pk_notification_messages"),
    )
    op.execute("INSERT INTO notification_messages (notification_id, message_bytes) "
               "SELECT id, message_bytes FROM notifications "
               "WHERE message_bytes IS NOT NULL AND status IN ('queued', 'retrying')")
    op.execute("ALTER TABLE notifications DROP COLUMN message_bytes")
    op.drop_index("ix_events_reseller_id_seq", "events")


def downgrade() -> None:
    op.create_index("ix_events_reseller_id_seq", "events", ["reseller_id", "seq"])
    op.add_column("notifications", sa.Column("message_bytes", sa.LargeBinary(), nullable=True))
    op.execute("UPDATE notifications SET message_bytes = (SELECT m.message_bytes "
               "FROM notification_messages m WHERE m.notification_id = notifications.id)")
    op.drop_table("notification_messages")
