"""digest indexes: each group's count and first entries from one index range

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_subscriptions_reseller_id_bucket_anniversary_date_status",
                    "subscriptions", ["reseller_id", "bucket", "anniversary_date", "status"])
    op.create_index("ix_customers_reseller_id_account_state", "customers",
                    ["reseller_id", "account_state"])


def downgrade() -> None:
    op.drop_index("ix_customers_reseller_id_account_state", "customers")
    op.drop_index("ix_subscriptions_reseller_id_bucket_anniversary_date_status", "subscriptions")
