"""pass lifecycle: who runs a pass (host, pid), its heartbeat and its error

Revision ID: 0006_lifecycle
Revises: 0005_reimport
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import worker.db.types

revision = "0006_lifecycle"
down_revision = "0005_reimport"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("passes") as batch:
        batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", worker.db.types.UtcDateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
    op.create_index("ix_passes_outcome", "passes", ["outcome"])


def downgrade() -> None:
    op.drop_index("ix_passes_outcome", "passes")
    with op.batch_alter_table("passes") as batch:
        batch.drop_column("error")
        batch.drop_column("heartbeat_at")
        batch.drop_column("pid")
        batch.drop_column("host")
