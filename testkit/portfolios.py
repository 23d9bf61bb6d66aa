"""Large portfolios written straight into the tables with Core bulk inserts: 200,000
subscriptions take seconds, not the minutes an import would.

Two of them, with the same ids, time zones and bulk insert (`insert_rows`):

- the first pass (`build_first_pass`, for tests): rows as a first import of the whole
  portfolio leaves them. Every subscription starts `pending_start` and every customer
  `current`, all due at the epoch: one pass then evaluates all of them, chunk after
  chunk: a long pass, for the tests that stop or break it half-way.
- the settled portfolio (`Plan` here, built by `testkit.settled.build`, for the pass,
  memory and replica benchmarks): every row in the state the daily pass before the bench
  moment left it, with the same number of records due at the bench moment whatever the
  portfolio's size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from worker.db.engine import MIGRATIONS, make_engine, upgrade
from worker.db.schema import CUSTOMERS, EPOCH, RESELLERS, SUBSCRIPTIONS
from worker.rules.calendar import add_months

GENERATOR_VERSION = 1  # bump when testkit.settled's rows change (prepared files are reused)
CHUNK = 10_000
RESELLER_ZONES = ("Europe/Paris", "Europe/London", "America/Toronto", "Europe/Berlin",
                  "America/New_York")
CUSTOMER_ZONES = ("Europe/Paris", "Europe/London", "America/Toronto", "America/Los_Angeles",
                  "Pacific/Auckland", "Asia/Tokyo", "UTC", "Australia/Sydney")
PRODUCTS = ("TBox", "Signatures for Microsoft 365", "Stratocast", "Worry-Free Services",
            "Acrobat Pro")
Row = dict[str, Any]


def reseller_id(index: int) -> str:
    return f"R{index:03d}"


def customer_id(index: int) -> str:
    return f"C{index:08d}"


def subscription_id(index: int) -> str:
    return f"S{index:08d}"


# --- the one bulk insert -----------------------------------------------------------------


def insert_rows(connection: Connection, table: Any, rows: list[Row]) -> int:
    """Insert `rows` (dicts with the same keys) into `table`, CHUNK at a time; their number.

    Core's executemany; on SQLite straight to the driver, each column's values converted
    by the column type's own bind processor (the text Core would store): a third of the
    time. A table with a Python-side default for a column the rows leave out goes through
    Core, which fills it in."""
    if not rows:
        return 0
    columns = list(rows[0])
    dialect = connection.dialect
    defaulted = any(column.default is not None for column in table.columns
                    if column.name not in columns)
    if dialect.name != "sqlite" or defaulted:
        for start in range(0, len(rows), CHUNK):
            connection.execute(table.insert(), rows[start:start + CHUNK])
        return len(rows)
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                  for name in columns]
    statement = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                 f"VALUES ({', '.join('?' for _ in columns)})")
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        values = [[row[name] for row in chunk] if process is None
                  else [process(row[name]) for row in chunk]
                  for name, process in zip(columns, processors, strict=True)]
        connection.exec_driver_sql(statement, list(zip(*values, strict=True)))
    return len(rows)


# --- the settled portfolio's plan --------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What to generate: sizes, due records and the bench moment."""

    subscriptions: int
    due: int
    moment: datetime
    resellers: int = 50
    seed: int = 20270310

    @property
    def customers(self) -> int:
        return max(1, self.subscriptions // 3)

    @property
    def due_customers(self) -> int:
        return self.due // 10

    @property
    def due_subscriptions(self) -> int:
        return self.due - self.due_customers

    @property
    def settled_at(self) -> datetime:
        """The moment of the previous daily pass."""
        return self.moment - timedelta(days=1)

    def name(self) -> str:
        """Names the prepared database: parameters, generator and migrations."""
        stamp = self.moment.strftime("%Y%m%dt%H%M")
        return (f"bench_v{GENERATOR_VERSION}_{schema_stamp()}_{self.subscriptions}_"
                f"{self.due}_{self.resellers}_{self.seed}_{stamp}")


def schema_stamp() -> str:
    """Short hash of the migration scripts: a prepared database of another schema is
    never reused, even when a migration was edited in place."""
    digest = hashlib.sha256()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Zone:
    """A customer timezone with its local dates at the previous and the bench pass."""

    zone: ZoneInfo
    settled_on: date
    bench_on: date


def zones(plan: Plan) -> list[Zone]:
    found = []
    for name in CUSTOMER_ZONES:
        zone = ZoneInfo(name)
        found.append(Zone(zone, plan.settled_at.astimezone(zone).date(),
                          plan.moment.astimezone(zone).date()))
    return found


# --- the first pass ----------------------------------------------------------------------

FIRST_PASS_AT = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)  # the first pass's moment
FIRST_PASS_RESELLERS = 50


def _first_reseller(index: int) -> Row:
    rid = reseller_id(index)
    return {"id": rid, "name": f"Reseller {rid}", "email": f"ops@{rid.lower()}.example",
            "sender_name": f"Reseller {rid}", "reply_to": None,
            "locale": "fr" if index % 2 else "en", "timezone": CUSTOMER_ZONES[index % 4],
            "account_managers": [], "next_digest_at": EPOCH}


def _first_customer(index: int) -> Row:
    cid = customer_id(index)
    return {"id": cid, "reseller_id": reseller_id(index % FIRST_PASS_RESELLERS),
            "name": f"Customer {index}", "segment": "commercial",
            "locale": "fr" if index % 2 else "en",
            "timezone": CUSTOMER_ZONES[index % len(CUSTOMER_ZONES)],
            "country": "FR", "managed_by": None,
            "admins": [{"name": f"Admin of {cid}", "email": f"admin@{cid.lower()}.example"}],
            "account_state": "active", "invitation_status": None, "invitation_sent_at": None,
            "payment_standing": "current", "next_check_at": EPOCH, "error": None}


def _first_subscription(index: int, customers: int) -> Row:
    owner = index % customers
    start = date(2026, 1, 1) + timedelta(days=index % 700)
    return {"id": subscription_id(index), "customer_id": customer_id(owner),
            "reseller_id": reseller_id(owner % FIRST_PASS_RESELLERS), "product": "TBox",
            "licences": 1 + index % 50, "start_date": start,
            "anniversary_date": add_months(start, 12, start.day), "anchor_day": start.day,
            "term_months": 12, "current_term_months": 12, "first_term_extended": False,
            "auto_renew": index % 3 == 0,
            "status": "pending_start", "bucket": "not_started", "next_check_at": EPOCH,
            "error": None}


def build_first_pass(url: str, subscriptions: int) -> None:
    """Migrate the database at `url` and fill it with `subscriptions` subscriptions (and
    a third as many customers), all due at `FIRST_PASS_AT`."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        customers = max(1, subscriptions // 3)
        for table, rows in (
            (RESELLERS, [_first_reseller(i) for i in range(FIRST_PASS_RESELLERS)]),
            (CUSTOMERS, [_first_customer(i) for i in range(customers)]),
            (SUBSCRIPTIONS, [_first_subscription(i, customers) for i in range(subscriptions)]),
        ):
            with engine.begin() as connection:
                insert_rows(connection, table, rows)
    finally:
        engine.dispose()
