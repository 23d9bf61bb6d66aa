"""reimport: the worker's current term beside the term sold, imports in the audit trail

Revision ID: 0005_reimport
Revises: 0004

`term_months` becomes the term the portal sold, as last imported, and
`current_term_months` the worker's own term (what the rules use), first copied from
`term_months`, which passes used to move. Where a pass may have moved it (a subscription
past its start whose first term is not, or no longer, extended) the term last imported is
not known any more: it is set to NULL, and the next import records the portal's term
without taking it for a new decision. `imported_pending_term_months` is the pending change
as last imported, first copied from the one still waiting.

Imports get their own row (`imports`), and the audit trail (`transitions`) names either a
pass or an import; its values widen to hold timestamps and may be NULL (a cleared value).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import worker.db.types

revision = "0005_reimport"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", worker.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("current_term_months", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("imported_pending_term_months", sa.Integer(),
                                      nullable=True))
        batch_op.alter_column("term_months", existing_type=sa.Integer(), nullable=True)
    subscriptions = sa.table(
        "subscriptions", sa.column("term_months", sa.Integer()),
        sa.column("current_term_months", sa.Integer()),
        sa.column("pending_term_months", sa.Integer()),
        sa.column("imported_pending_term_months", sa.Integer()),
        sa.column("status", sa.String()), sa.column("first_term_extended", sa.Boolean()),
    )
    op.execute(subscriptions.update().values(
        current_term_months=subscriptions.c.term_months,
        imported_pending_term_months=subscriptions.c.pending_term_months))
    op.execute(subscriptions.update()
               .where(subscriptions.c.status != "pending_start",
                      subscriptions.c.first_term_extended == sa.false())
               .values(term_months=None))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.alter_column("current_term_months", existing_type=sa.Integer(),
                              nullable=False)
    with _events_let_go(), op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_id", sa.Integer(), nullable=True))
        batch_op.alter_column("pass_id", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("record_type", existing_type=sa.String(length=16),
                              type_=sa.String(length=24))
        for name in ("from_value", "to_value"):
            batch_op.alter_column(name, existing_type=sa.String(length=24),
                                  type_=sa.String(length=64), nullable=True)
        batch_op.create_index(batch_op.f("ix_transitions_import_id"), ["import_id"])
        batch_op.create_foreign_key(batch_op.f("fk_transitions_import_id_imports"),
                                    "imports", ["import_id"], ["id"])


@contextmanager
def _events_let_go() -> Iterator[None]:
    """SQLite rebuilds `transitions`, which `events.transition_id` refers to, and with
    foreign keys on the rebuild's DROP fails (PRAGMA foreign_keys cannot change inside a
    transaction, and deferring does not help: SQLite counts violations, it does not
    re-check). The references are set aside in a scratch table and put back after."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMPORARY TABLE events_transitions AS "
               "SELECT seq, transition_id FROM events WHERE transition_id IS NOT NULL")
    op.execute("UPDATE events SET transition_id = NULL WHERE transition_id IS NOT NULL")
    yield
    op.execute("UPDATE events SET transition_id = (SELECT kept.transition_id FROM "
               "events_transitions AS kept WHERE kept.seq = events.seq) "
               "WHERE seq IN (SELECT seq FROM events_transitions)")
    op.execute("DROP TABLE events_transitions")


def downgrade() -> None:
    """Back to one term (the current one, which old passes move) and pass-only audit rows."""
    op.execute("DELETE FROM transitions WHERE pass_id IS NULL OR to_value IS NULL")
    with _events_let_go(), op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_transitions_import_id_imports"),
                                 type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_transitions_import_id"))
        batch_op.drop_column("import_id")
        batch_op.alter_column("pass_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("record_type", existing_type=sa.String(length=24),
                              type_=sa.String(length=16))
        for name in ("from_value", "to_value"):
            batch_op.alter_column(name, existing_type=sa.String(length=64),
                                  type_=sa.String(length=24), nullable=name == "from_value")
    op.execute("UPDATE subscriptions SET term_months = current_term_months")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.alter_column("term_months", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("imported_pending_term_months")
        batch_op.drop_column("current_term_months")
    op.drop_table("imports")
