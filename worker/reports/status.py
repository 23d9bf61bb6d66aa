"""`status`: the dashboard's aggregates over the stored state (subscriptions per bucket,
customers per standing, notices per delivery state, passes, webhooks).

They read only what passes stored, through indexed columns; nothing is recomputed from
the clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from worker.db.schema import CODES, CUSTOMERS, NOTIFICATIONS, PASSES, SUBSCRIPTIONS
from worker.webhooks.store import webhook_status


def dashboard(connection: Connection) -> dict[str, Any]:
    """Subscriptions per bucket, customers per standing, notices per delivery state,
    pass rows per outcome (`running`, `failed` and `abandoned` ones show up here),
    records the last pass that met them could not evaluate (each named, with its reason,
    in that pass's summary and its `history`), webhook deliveries per state and each
    endpoint's state."""
    s, c, n, p = SUBSCRIPTIONS.c, CUSTOMERS.c, NOTIFICATIONS.c, PASSES.c
    return {
        "subscriptions": dict(
            connection.execute(select(s.bucket, func.count()).group_by(s.bucket)).tuples().all()
        ),
        "customers": dict(connection.execute(
            select(c.payment_standing, func.count()).group_by(c.payment_standing)
        ).tuples().all()),
        "notifications": dict(
            connection.execute(select(n.status, func.count()).group_by(n.status)).tuples().all()
        ),
        "passes": dict(connection.execute(
            select(p.outcome, func.count())
            .where(p.dry_run.is_(False), p.trigger != "forecast").group_by(p.outcome)
        ).tuples().all()),
        "unprocessable": unprocessable(connection),
        "webhooks": webhook_status(connection),
    }


def unprocessable(connection: Connection) -> dict[str, int]:
    """Records per kind whose last evaluation failed (their `error` is set)."""
    tables = {"subscription": SUBSCRIPTIONS, "customer": CUSTOMERS, "code": CODES}
    counts = {kind: connection.execute(select(func.count()).select_from(table)
                                       .where(table.c.error.is_not(None))).scalar_one()
              for kind, table in tables.items()}
    return {kind: count for kind, count in counts.items() if count}
