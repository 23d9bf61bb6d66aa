"""Queries that select what may be due and turn rows into the rules' snapshots.

Only the columns a rule needs are read, through Core, for the ids a pass claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Row, select

from worker.db.schema import CODES, CUSTOMERS, INVOICES, RESELLERS, SUBSCRIPTIONS
from worker.errors import RecordError
from worker.rules.codes import Code
from worker.rules.invitations import Invitation
from worker.rules.payments import Invoice, Standing
from worker.rules.subscriptions import PendingChange, Renewal, SubscriptionState


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class ResellerInfo:
    id: str
    name: str
    email: str
    sender_name: str
    reply_to: str | None
    locale: str
    timezone: str
    managers: dict[str, Person]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email,
                "sender_name": self.sender_name, "reply_to": self.reply_to}


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    """Who a customer is and who hears about it; shared by every rule about it."""

    id: str
    name: str
    reseller_id: str
    locale: str
    zone: ZoneInfo
    admins: tuple[Person, ...]
    managed_by: str | None
    account_state: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def zone_of(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise RecordError(f"{what}: unknown timezone {name!r}") from None


def _people(raw: Any, what: str) -> tuple[Person, ...]:
    if not isinstance(raw, list):
        raise RecordError(f"{what}: not a list")
    try:
        return tuple(Person(str(item.get("name") or ""), str(item["email"])) for item in raw)
    except (AttributeError, KeyError, TypeError):
        raise RecordError(f"{what}: malformed contact list") from None


def load_resellers(connection: Connection) -> dict[str, ResellerInfo]:
    """Every reseller (a handful per portal), keyed by id."""
    resellers: dict[str, ResellerInfo] = {}
    for row in connection.execute(select(RESELLERS)):
        managers_raw = row.account_managers if isinstance(row.account_managers, list) else []
        managers = {
            str(item.get("id")): Person(str(item.get("name") or ""), str(item.get("email")))
            for item in managers_raw if isinstance(item, dict) and item.get("email")
        }
        resellers[row.id] = ResellerInfo(row.id, row.name, row.email, row.sender_name,
                                         row.reply_to, row.locale, row.timezone, managers)
    return resellers


def due_ids(connection: Connection, table: Any, moment: datetime,
            column: str = "next_check_at") -> list[str]:
    """Ids whose next check (`column`, indexed) has come."""
    # Sorted here, not by ORDER BY: without statistics SQLite would rather walk the primary
    # key in order than sort, which reads the whole table.
    query = select(table.c.id).where(table.c[column] <= moment)
    return sorted(connection.scalars(query))


def _claim(query: Any, connection: Connection, table: Any) -> Any:
    """Lock the claimed rows of `table` on PostgreSQL; rows another replica holds are skipped.

    SQLite has no row locks (SQLAlchemy drops FOR UPDATE there); its passes run under
    BEGIN IMMEDIATE, which serialises writers instead.
    """
    if connection.dialect.name == "postgresql":
        return query.with_for_update(of=table, skip_locked=True)
    return query


_CUSTOMER_COLUMNS = tuple(
    CUSTOMERS.c[name].label(f"cust_{name}")
    for name in ("id", "name", "reseller_id", "locale", "timezone", "admins", "managed_by",
                 "account_state")
)


def customer_info(row: Row[Any]) -> CustomerInfo:
    what = f"customer {row.cust_id}"
    return CustomerInfo(
        id=row.cust_id, name=row.cust_name, reseller_id=row.cust_reseller_id,
        locale=row.cust_locale, zone=zone_of(row.cust_timezone, what),
        admins=_people(row.cust_admins, f"{what} admins"), managed_by=row.cust_managed_by,
        account_state=row.cust_account_state,
    )


def _claim_with_customer(
    connection: Connection, table: Any, ids: Sequence[str], moment: datetime
) -> list[Row[Any]]:
    """Due rows of `table` joined to their customer, locked on PostgreSQL (SKIP LOCKED)."""
    query = (
        select(table, *_CUSTOMER_COLUMNS)
        .join(CUSTOMERS, CUSTOMERS.c.id == table.c.customer_id)
        .where(table.c.id.in_(ids), table.c.next_check_at <= moment)
    )
    return list(connection.execute(_claim(query, connection, table)))


def claim_subscriptions(
    connection: Connection, ids: Sequence[str], moment: datetime
) -> list[Row[Any]]:
    return _claim_with_customer(connection, SUBSCRIPTIONS, ids, moment)


def subscription_state(row: Row[Any]) -> SubscriptionState:
    what = f"subscription {row.id}"
    for column in ("start_date", "anniversary_date", "anchor_day", "current_term_months",
                   "status"):
        if getattr(row, column) is None:
            raise RecordError(f"{what}: {column} is missing")
    if row.current_term_months <= 0 or not 1 <= row.anchor_day <= 31:
        raise RecordError(f"{what}: impossible term ({row.current_term_months}) or anchor day")
    renewal = None
    if row.renewal_ordered_on is not None:
        renewal = Renewal(row.renewal_ordered_on, int(row.renewal_years or 1))
    change = None
    if row.pending_term_months is not None:
        change = PendingChange(row.pending_term_months,
                               row.pending_due_ad or row.anniversary_date)
    return SubscriptionState(
        id=row.id, start_date=row.start_date, anniversary_date=row.anniversary_date,
        anchor_day=row.anchor_day, term_months=row.current_term_months,
        first_term_extended=bool(row.first_term_extended), auto_renew=bool(row.auto_renew),
        renewal=renewal, renewal_spent_through=row.renewal_spent_through,
        pending_change=change, status=row.status, status_since=row.status_since,
    )


def claim_customers(
    connection: Connection, ids: Sequence[str], moment: datetime
) -> list[Row[Any]]:
    query = select(CUSTOMERS, *_CUSTOMER_COLUMNS).where(
        CUSTOMERS.c.id.in_(ids), CUSTOMERS.c.next_check_at <= moment
    )
    return list(connection.execute(_claim(query, connection, CUSTOMERS)))


def invoices_of(connection: Connection, customer_ids: Sequence[str]) -> dict[str, list[Invoice]]:
    by_customer: dict[str, list[Invoice]] = {cid: [] for cid in customer_ids}
    query = select(INVOICES.c.id, INVOICES.c.customer_id, INVOICES.c.requested_on,
                   INVOICES.c.paid_on).where(INVOICES.c.customer_id.in_(customer_ids))
    for row in connection.execute(query):
        by_customer[row.customer_id].append(Invoice(row.id, row.requested_on, row.paid_on))
    return by_customer


def standing_of(row: Row[Any]) -> Standing:
    return Standing(row.payment_standing, row.payment_episode, row.payment_since,
                    row.late_notice_barred)


def invitation_of(row: Row[Any]) -> Invitation | None:
    if row.invitation_status is None or row.invitation_sent_at is None:
        return None
    return Invitation(row.invitation_status, row.invitation_sent_at)


def claim_codes(connection: Connection, ids: Sequence[str], moment: datetime) -> list[Row[Any]]:
    return _claim_with_customer(connection, CODES, ids, moment)


def code_of(row: Row[Any]) -> Code:
    if row.issued_at is None:
        raise RecordError(f"code {row.id}: issued_at is missing")
    return Code(row.id, row.issued_at, row.used_at, row.status)
