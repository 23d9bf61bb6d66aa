"""`export`: the state exactly as the last pass left it; nothing is recomputed."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select

from worker.db.schema import CODES, CUSTOMERS, NOTIFICATIONS, SUBSCRIPTIONS
from worker.rules.payments import effective_account_state


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _customers(connection: Connection) -> Iterator[dict[str, Any]]:
    c = CUSTOMERS.c
    query = select(c.id, c.name, c.reseller_id, c.payment_standing, c.account_state,
                   c.invitation_status).order_by(c.id)
    for row in connection.execute(query):
        yield {"id": row.id, "name": row.name, "reseller_id": row.reseller_id,
               "payment_standing": row.payment_standing,
               "account_state": effective_account_state(row.account_state,
                                                        row.payment_standing),
               "person_account_state": row.account_state,
               "invitation_status": row.invitation_status}


def _subscriptions(connection: Connection) -> Iterator[dict[str, Any]]:
    s = SUBSCRIPTIONS.c
    query = select(s.id, s.customer_id, s.product, s.status, s.status_since,
                   s.anniversary_date, s.bucket, s.term_months, s.current_term_months,
                   s.error).order_by(s.id)
    for row in connection.execute(query):
        yield {"id": row.id, "customer_id": row.customer_id, "product": row.product,
               "status": row.status, "status_since": _iso(row.status_since),
               "anniversary_date": _iso(row.anniversary_date), "bucket": row.bucket,
               "term_months": row.term_months, "current_term_months": row.current_term_months,
               "error": row.error}


def _codes(connection: Connection) -> Iterator[dict[str, Any]]:
    k = CODES.c
    query = select(k.id, k.customer_id, k.reseller_id, k.status, k.issued_at).order_by(k.id)
    for row in connection.execute(query):
        yield {"id": row.id, "customer_id": row.customer_id, "reseller_id": row.reseller_id,
               "status": row.status, "issued_at": _iso(row.issued_at)}


def _notifications(connection: Connection) -> Iterator[dict[str, Any]]:
    n = NOTIFICATIONS.c
    query = select(n.id, n.kind, n.ref, n.occasion, n.audience, n.recipients, n.status,
                   n.created_at, n.sent_at, n.attempts, n.last_error).order_by(n.id)
    for row in connection.execute(query):
        yield {"kind": row.kind, "ref": row.ref, "audience": row.audience,
               "recipients": list(row.recipients), "status": row.status,
               "occasion": row.occasion, "created_at": _iso(row.created_at),
               "sent_at": _iso(row.sent_at), "attempts": row.attempts,
               "last_error": row.last_error}


def export_state(connection: Connection) -> dict[str, list[dict[str, Any]]]:
    return {
        "customers": list(_customers(connection)),
        "subscriptions": list(_subscriptions(connection)),
        "codes": list(_codes(connection)),
        "notifications": list(_notifications(connection)),
    }


CSV_COLUMNS = (
    "section", "id", "status", "anniversary_date", "bucket", "term_months",
    "current_term_months", "payment_standing",
    "account_state", "kind", "ref", "audience", "recipients", "created_at", "sent_at",
)


def export_csv(state: dict[str, list[dict[str, Any]]]) -> str:
    """One table: a row per record, `section` naming what it is."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for section, rows in state.items():
        for row in rows:
            flat = {**row, "section": section}
            if "recipients" in row:
                flat["recipients"] = ";".join(row["recipients"])
            writer.writerow(flat)
    return buffer.getvalue()
