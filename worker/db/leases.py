"""Leases shared by the two drains (the outbox's notifications, the webhook deliveries):
rows held by a `claim_token` until `claimed_until`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Table, select, update


def extend_leases(connection: Connection, table: Table, token: str, until: datetime) -> int:
    """Keep the rows `token` still holds in `table` until `until`; the number extended.

    A row locked at that moment is skipped, not waited for: its lock is held by the
    transaction recording its outcome (which gives the lease back) or by a pass
    cancelling it. Waiting for those rows, taken in another order than the writer's, was
    a deadlock between a drain's heartbeat and its own writer (seen with three replicas
    on PostgreSQL). A lock that ends otherwise leaves the lease one third of its length
    short until the next extension, two before it runs out."""
    mine = table.c.claim_token == token
    statement = update(table).where(mine).values(claimed_until=until)
    if connection.dialect.name == "postgresql":  # SQLite locks the database, not rows
        held = (select(table.c.id).where(mine).with_for_update(skip_locked=True)
                .cte("held").prefix_with("MATERIALIZED"))
        statement = statement.where(table.c.id.in_(select(held.c.id)))
    return int(connection.execute(statement).rowcount or 0)
