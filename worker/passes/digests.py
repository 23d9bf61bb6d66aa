"""The digest's groups for one reseller, read from what passes stored (buckets,
standings) through indexed columns, so the cost follows the groups' sizes and nothing is
recomputed from the clock.

Imports: worker.db, worker.rules.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import ColumnElement, Connection, and_, func, select, union_all

from worker.db.schema import CUSTOMERS, SUBSCRIPTIONS
from worker.rules.digest import GROUPS, Group


def _subscription_groups(today: date, recently: int) -> dict[str, ColumnElement[bool]]:
    s = SUBSCRIPTIONS.c
    return {
        "to_renew": and_(s.bucket == "to_renew", s.status != "ready_for_renewal"),
        "ready_for_renewal": and_(s.bucket == "to_renew", s.status == "ready_for_renewal"),
        "in_grace": s.bucket == "expired",
        "lapsed": and_(s.bucket == "lapsed", s.status_since >= today - timedelta(days=recently)),
        "not_started": s.bucket == "not_started",
        "renewed": s.bucket == "renewed",
    }


def _customer_groups(reseller_id: str) -> dict[str, ColumnElement[bool]]:
    c = CUSTOMERS.c
    mine = c.reseller_id == reseller_id
    # The OR as a union of two index searches: SQLite's planner otherwise reads every
    # customer of the reseller.
    suspended = union_all(select(c.id).where(mine, c.payment_standing == "suspended"),
                          select(c.id).where(mine, c.account_state == "suspended"))
    return {
        "late_payment": and_(mine, c.payment_standing == "late"),
        "suspended": c.id.in_(suspended),
        "pending_invitations": and_(mine, c.invitation_status == "pending"),
    }


def digest_groups(
    connection: Connection, reseller_id: str, today: date, recently: int, listed: int
) -> tuple[Group, ...]:
    """The digest's groups for one reseller, in the order of `rules.digest.GROUPS`."""
    s, c = SUBSCRIPTIONS.c, CUSTOMERS.c
    found: dict[str, Group] = {}
    for key, condition in _subscription_groups(today, recently).items():
        where = and_(s.reseller_id == reseller_id, condition)
        count = connection.scalar(select(func.count()).select_from(SUBSCRIPTIONS).where(where))
        rows = connection.execute(
            select(c.id, c.name, s.id.label("sid"), s.product, s.anniversary_date)
            .join(CUSTOMERS, c.id == s.customer_id).where(where)
            .order_by(s.anniversary_date, s.id).limit(listed)
        )
        entries = tuple({"customer_id": r.id, "customer": r.name, "subscription_id": r.sid,
                         "product": r.product, "anniversary_date": r.anniversary_date.isoformat()}
                        for r in rows)
        found[key] = Group(key, int(count or 0), entries)
    for key, where in _customer_groups(reseller_id).items():
        count = connection.scalar(select(func.count()).select_from(CUSTOMERS).where(where))
        rows = connection.execute(select(c.id, c.name).where(where).order_by(c.name, c.id)
                                  .limit(listed))
        entries = tuple({"customer_id": r.id, "customer": r.name} for r in rows)
        found[key] = Group(key, int(count or 0), entries)
    return tuple(found[key] for key in GROUPS)
