"""`status`: the dashboard's aggregates over the stored state (subscriptions per bucket,
customers per standing, notices per delivery state, passes, webhooks, and the mail's
standing: domains sending unsigned, addresses suppressed, recipients bounced).

They read only what passes stored, through indexed columns; nothing is recomputed from
the clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, distinct, func, select

from worker.db.schema import (
    BOUNCE_REPORTS,
    CODES,
    CUSTOMERS,
    NOTIFICATIONS,
    PASSES,
    RESELLERS,
    SUBSCRIPTIONS,
    SUPPRESSIONS,
)
from worker.mail.senders import Senders
from worker.webhooks.store import webhook_status


def dashboard(connection: Connection, senders: Senders | None = None) -> dict[str, Any]:
    """Subscriptions per bucket, customers per standing, notices per delivery state,
    pass rows per outcome (`running`, `failed` and `abandoned` ones show up here),
    records the last pass that met them could not evaluate (each named, with its reason,
    in that pass's summary and its `history`), webhook deliveries per state and each
    endpoint's state, and the mail's standing (`mail_standing`)."""
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
        "mail": mail_standing(connection, senders or Senders()),
    }


def mail_standing(connection: Connection, senders: Senders) -> dict[str, Any]:
    """The resellers' domains whose mail goes out unsigned (no DKIM key, no fallback
    sender), the addresses suppressed, and the recipients recorded as bounced."""
    emails = connection.execute(select(distinct(RESELLERS.c.email))).scalars().all()
    suppressed = connection.scalar(select(func.count()).select_from(SUPPRESSIONS)
                                   .where(SUPPRESSIONS.c.lifted_at.is_(None)))
    bounced = connection.scalar(select(func.count(distinct(BOUNCE_REPORTS.c.recipient)))
                                .where(BOUNCE_REPORTS.c.permanent.is_(True)))
    return {"unsigned_domains": senders.unsigned(emails), "suppressed": int(suppressed or 0),
            "bounced": int(bounced or 0)}


def unprocessable(connection: Connection) -> dict[str, int]:
    """Records per kind whose last evaluation failed (their `error` is set)."""
    tables = {"subscription": SUBSCRIPTIONS, "customer": CUSTOMERS, "code": CODES}
    counts = {kind: connection.execute(select(func.count()).select_from(table)
                                       .where(table.c.error.is_not(None))).scalar_one()
              for kind, table in tables.items()}
    return {kind: count for kind, count in counts.items() if count}
