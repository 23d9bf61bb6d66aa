"""unsettled_claims: the claims in a row whose outcome was never recorded

Notifications and webhook deliveries count them; past `hold_after_unrecorded_claims` a
row is held instead of being sent again (a write the database always refuses would
otherwise send the same rows at every drain). `held` is a new value of their status.

Revision ID: 0010_unsettled_claims
Revises: 0009_messages
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_unsettled_claims"
down_revision = "0009_messages"
branch_labels = None
depends_on = None

TABLES = ("notifications", "webhook_deliveries")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("unsettled_claims", sa.Integer(), nullable=False,
                                       server_default="0"))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "unsettled_claims")
