"""A first pass over a large portfolio: rows as a first import leaves them, bulk-inserted.

Every subscription starts `pending_start` and every customer `current`, all due at the
epoch, as after a first import of the whole portfolio: one pass then evaluates all of
them, chunk after chunk: a long pass, for the tests that stop or break it half-way.
Rows are written with Core bulk inserts (the same shape as `scripts/bench_common.py`'s,
without settling them first), so 200,000 subscriptions take seconds, not minutes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from worker.db.engine import make_engine, upgrade
from worker.db.schema import CUSTOMERS, EPOCH, RESELLERS, SUBSCRIPTIONS
from worker.rules.calendar import add_months

MOMENT = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
RESELLER_COUNT = 50
ZONES = ("Europe/Paris", "Europe/London", "America/Toronto", "America/Los_Angeles",
         "Pacific/Auckland", "Asia/Tokyo", "UTC", "Australia/Sydney")
BATCH = 10_000


def _reseller(index: int) -> dict[str, Any]:
    rid = f"R{index:03d}"
    return {"id": rid, "name": f"Reseller {rid}", "email": f"ops@{rid.lower()}.example",
            "sender_name": f"Reseller {rid}", "reply_to": None,
            "locale": "fr" if index % 2 else "en", "timezone": ZONES[index % 4],
            "account_managers": [], "next_digest_at": EPOCH}


def _customer(index: int) -> dict[str, Any]:
    cid = f"C{index:08d}"
    return {"id": cid, "reseller_id": f"R{index % RESELLER_COUNT:03d}",
            "name": f"Customer {index}", "segment": "commercial",
            "locale": "fr" if index % 2 else "en", "timezone": ZONES[index % len(ZONES)],
            "country": "FR", "managed_by": None,
            "admins": [{"name": f"Admin of {cid}", "email": f"admin@{cid.lower()}.example"}],
            "account_state": "active", "invitation_status": None, "invitation_sent_at": None,
            "payment_standing": "current", "next_check_at": EPOCH, "error": None}


def _subscription(index: int, customers: int) -> dict[str, Any]:
    owner = index % customers
    start = date(2026, 1, 1) + timedelta(days=index % 700)
    return {"id": f"S{index:08d}", "customer_id": f"C{owner:08d}",
            "reseller_id": f"R{owner % RESELLER_COUNT:03d}", "product": "TBox",
            "licences": 1 + index % 50, "start_date": start,
            "anniversary_date": add_months(start, 12, start.day), "anchor_day": start.day,
            "term_months": 12, "current_term_months": 12, "first_term_extended": False,
            "auto_renew": index % 3 == 0,
            "status": "pending_start", "bucket": "not_started", "next_check_at": EPOCH,
            "error": None}


def _insert(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> None:
    """Core's bulk insert; on SQLite straight to the driver, with the values converted
    column by column to the text SQLAlchemy would store: a third of the time."""
    with engine.begin() as connection:
        if engine.dialect.name != "sqlite":
            for start in range(0, len(rows), BATCH):
                connection.execute(table.insert(), rows[start:start + BATCH])
            return
        columns = list(rows[0])
        values = [[_stored(row[column]) for row in rows] if _converted(rows[0][column])
                  else [row[column] for row in rows] for column in columns]
        statement = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                     f"VALUES ({', '.join('?' for _ in columns)})")
        connection.exec_driver_sql(statement, list(zip(*values, strict=True)))


def _converted(sample: Any) -> bool:
    return isinstance(sample, date | list | dict)


def _stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def build_first_pass(url: str, subscriptions: int) -> None:
    """Migrate the database at `url` and fill it with `subscriptions` subscriptions (and
    a third as many customers), all due at `MOMENT`."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        customers = max(1, subscriptions // 3)
        _insert(engine, RESELLERS, [_reseller(i) for i in range(RESELLER_COUNT)])
        _insert(engine, CUSTOMERS, [_customer(i) for i in range(customers)])
        _insert(engine, SUBSCRIPTIONS, [_subscription(i, customers)
                                        for i in range(subscriptions)])
    finally:
        engine.dispose()
