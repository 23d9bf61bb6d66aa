"""mail auth: bounce tokens, bounce reports and suppressed addresses

`notifications.bounce_token` names a notice in the envelope senders of its messages
(`bounces+<token>.<check>@<bounce_domain>`); rows written before it have none and their
bounces are matched by Message-ID (hence the index on `message_id`). `bounce_reports`
keeps each failure read from a report once per (report, recipient): reading a report
twice changes nothing. `suppressions` holds the addresses no notice goes to, with why,
where from and since when; a lifted one keeps its row (`lifted_at`, `lifted_by`).

Revision ID: 0011_mail_auth
Revises: 0010_unsettled_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worker.db.types import UtcDateTime

revision = "0011_mail_auth"
down_revision = "0010_unsettled_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("notifications", sa.Column("bounce_token", sa.String(16), nullable=True))
    op.create_index("ix_notifications_bounce_token", "notifications", ["bounce_token"])
    op.create_index("ix_notifications_message_id", "notifications", ["message_id"])
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"],
                                name="fk_bounce_reports_notification_id_notifications"),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_reports"),
        sa.UniqueConstraint("digest", "recipient", name="uq_bounce_reports_digest_recipient"),
    )
    op.create_index("ix_bounce_reports_notification_id", "bounce_reports", ["notification_id"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("lifted_at", UtcDateTime(), nullable=True),
        sa.Column("lifted_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("address", name="pk_suppressions"),
    )
    op.create_index("ix_suppressions_lifted_at", "suppressions", ["lifted_at"])


def downgrade() -> None:
    op.drop_index("ix_suppressions_lifted_at", "suppressions")
    op.drop_table("suppressions")
    op.drop_index("ix_bounce_reports_notification_id", "bounce_reports")
    op.drop_table("bounce_reports")
    op.drop_index("ix_notifications_message_id", "notifications")
    op.drop_index("ix_notifications_bounce_token", "notifications")
    op.drop_column("notifications", "bounce_token")
