"""Leases of the queues a drain serves (notifications, webhook deliveries): rows held by
a `claim_token` until `claimed_until`, and the count of claims in a row whose outcome
was never recorded (`unsettled_claims`), which ends a poison pill.

Every claim adds one to `unsettled_claims`; recording an outcome sets it back to 0, and
so does a release of a row that was never tried. A row still counted after a claim is one
whose attempt went out but whose outcome could not be written: a crash after the
server's answer, or a write the database refuses for good (a bug). Past the queue's
limit (`[delivery]`/`[webhooks] hold_after_unrecorded_claims`) the claim does not send it
again: it is `held`, with the reason, until an operator looks at it.

Imports: SQLAlchemy and structlog only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import structlog
from sqlalchemy import Connection, Table, case, select, update

HELD = "held"
log = structlog.get_logger("worker.db.leases")


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


def release_leases(connection: Connection, table: Table, token: str,
                   unrecorded: Collection[int] = ()) -> int:
    """Give back every lease `token` still holds (a drain that stopped, or ended with
    rows it did not try). Rows never tried lose the claim's count; the `unrecorded` ones
    (tried, outcome not written) keep it."""
    count = table.c.unsettled_claims
    untried = count - 1 if not unrecorded else case(
        (table.c.id.in_(list(unrecorded)), count), else_=count - 1)
    statement = (update(table).where(table.c.claim_token == token)
                 .values(claim_token=None, claimed_until=None, unsettled_claims=untried))
    return int(connection.execute(statement).rowcount or 0)


def hold(connection: Connection, table: Table, ids: Sequence[int], limit: int) -> None:
    """Mark `ids` (just claimed, each claimed more than `limit` times in a row without an
    outcome recorded) `held`, lease given back, with the reason as their last error."""
    if ids:
        reason = (f"held: claimed {limit} times without its outcome being recorded "
                  "(a write the database refuses?); not sent again until released")
        connection.execute(update(table).where(table.c.id.in_(list(ids)))
                           .values(status=HELD, last_error=reason, claim_token=None,
                                   claimed_until=None))
        log.warning("claims_held", table=table.name, ids=list(ids), claims=limit)
