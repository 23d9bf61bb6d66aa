"""The digest's groups for one reseller, read from what passes stored (buckets,
standings) through indexed columns, so the cost follows the groups' sizes and nothing is
recomputed from the clock.

The reseller's suppressed contacts (its own address, its account managers', its
customers' admins whose address no notice goes to) are listed beside the groups, so that
someone fixes them; read only when some address is suppressed at all.

Imports: worker.mail.suppressions, worker.db, worker.rules.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import ColumnElement, Connection, and_, func, select, union_all

from worker.db.schema import CUSTOMERS, RESELLERS, SUBSCRIPTIONS
from worker.mail.suppressions import any_suppressed, suppressed_among
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


def suppressed_contacts(connection: Connection, reseller_id: str,
                        limit: int) -> list[dict[str, str]]:
    """The reseller's contacts whose address is suppressed (its own address, its account
    managers', its customers' admins): who, which address, why, since when."""
    if not any_suppressed(connection):
        return []
    contacts: list[tuple[str, str, str]] = []  # (who, customer id or "", address)
    reseller = connection.execute(select(RESELLERS.c.name, RESELLERS.c.email,
                                         RESELLERS.c.account_managers)
                                  .where(RESELLERS.c.id == reseller_id)).first()
    if reseller is None:
        return []
    contacts.append((reseller.name, "", reseller.email))
    contacts += [(str(m.get("name") or ""), "", str(m.get("email") or ""))
                 for m in reseller.account_managers or () if isinstance(m, dict)]
    query = select(CUSTOMERS.c.id, CUSTOMERS.c.name, CUSTOMERS.c.admins).where(
        CUSTOMERS.c.reseller_id == reseller_id).order_by(CUSTOMERS.c.name, CUSTOMERS.c.id)
    for row in connection.execute(query):
        contacts += [(f"{admin.get('name') or ''} ({row.name})".strip(), row.id,
                      str(admin.get("email") or ""))
                     for admin in row.admins or () if isinstance(admin, dict)]
    found = suppressed_among(connection, [address for _, _, address in contacts])
    listed = []
    for who, customer_id, address in contacts:
        suppression = found.get(address.lower())
        if suppression is not None:
            listed.append({"who": who, "customer_id": customer_id, "address": address,
                           "reason": suppression.reason, "status": suppression.status or "",
                           "since": suppression.since.date().isoformat()})
    return listed[:limit]
