"""Rules across fields and records, judged on the merged records.

A reference may point to a record of the same file or to one already stored. A field
the file gave a refused value is not judged again here, so one mistake is one error.
"""

from __future__ import annotations

from sqlalchemy import Connection

from worker.importing.existing import managed_customers
from worker.importing.merge import Merged, World
from worker.importing.problems import Problems

_LISTED = 3  # customers named in one error; the rest are counted


def check_records(connection: Connection, world: World, problems: Problems) -> None:
    for merged in world.merged["customers"].values():
        _customer(merged, world, problems)
    for merged in world.merged["subscriptions"].values():
        _reference(merged, "customer_id", world, problems)
        _subscription_dates(merged, problems)
        _subscription_terms(merged, world, problems)
    for merged in world.merged["purchase_authorizations"].values():
        _reference(merged, "customer_id", world, problems)
        _not_before(merged, "paid_on", "requested_on", problems)
    for merged in world.merged["reseller_change_codes"].values():
        _reference(merged, "customer_id", world, problems)
        _reference(merged, "reseller_id", world, problems)
        _not_before(merged, "used_at", "issued_at", problems)
    _removed_managers(connection, world, problems)


_TARGETS = {
    "customer_id": ("customers", "customer"),
    "reseller_id": ("resellers", "reseller"),
}


def _reference(merged: Merged, name: str, world: World, problems: Problems) -> bool:
    """Whether the reference `name` resolves (an error is recorded when it does not)."""
    section, noun = _TARGETS[name]
    target = merged.row.get(name)
    if target is None or not merged.record.sound(name):
        return False
    if world.known(section, target):
        return True
    problems.error(merged.record.where.field(name), f"unknown {noun} {target!r}")
    return False


def _customer(merged: Merged, world: World, problems: Problems) -> None:
    row, where = merged.row, merged.record.where
    if merged.record.carries("invitation") and row["invitation_status"] == "pending" \
            and row["invitation_sent_at"] is None:
        problems.error(where.field("invitation").field("sent_at"),
                       "required while the invitation is pending")
    if not _reference(merged, "reseller_id", world, problems):
        return
    manager, reseller_id = row.get("managed_by"), row["reseller_id"]
    if manager is None or not merged.record.sound("managed_by"):
        return
    if not world.sound("resellers", reseller_id, "account_managers"):
        return
    reseller = world.row("resellers", reseller_id) or {}
    if manager not in {person["id"] for person in reseller.get("account_managers") or []}:
        problems.error(where.field("managed_by"),
                       f"unknown account manager {manager!r} of reseller {reseller_id!r}")


def _subscription_dates(merged: Merged, problems: Problems) -> None:
    row, record = merged.row, merged.record
    start = row.get("start_date")
    if start is None or not record.sound("start_date") or not record.sound("anniversary_date"):
        return
    carried = record.values.get("anniversary_date")
    if carried is not None:
        if carried <= start:
            problems.error(record.where.field("anniversary_date"),
                           f"must be after start_date {start}")
    elif row.get("anniversary_date") is not None and row["anniversary_date"] <= start:
        problems.error(record.where.field("start_date"),
                       f"must be before the stored anniversary_date {row['anniversary_date']}")


def _subscription_terms(merged: Merged, world: World, problems: Problems) -> None:
    """Terms, pending changes and renewals within the segment's cap on a term (004). A
    customer whose segment is not known yet gets the largest cap: no term or renewal is
    ever unbounded (5,000 renewal years would carry the anniversary past year 9999)."""
    row, record = merged.row, merged.record
    customer_id = row.get("customer_id")
    customer = world.row("customers", customer_id)
    if customer is not None and not world.sound("customers", customer_id, "segment"):
        return
    caps = world.policy.renewal.max_term_months
    segment = (customer or {}).get("segment")
    maximum = caps.get(segment or "", max(caps.values()))
    whom = f"a {segment} customer" if segment in caps else "any customer"
    checks = (("term_months", row.get("term_months"), record.where.field("term_months")),
              ("pending_change", row.get("pending_term_months"),
               record.where.field("pending_change").field("term_months")))
    for name, months, where in checks:
        if months is not None and record.sound(name) and months > maximum:
            problems.error(where, f"{months} months is above the maximum of {maximum} "
                                  f"for {whom}")
    years = row.get("renewal_years")
    if years is not None and record.carries("renewal") and record.sound("renewal") \
            and years * 12 > maximum:
        problems.error(record.where.field("renewal").field("years"),
                       f"{years} years is above the longest term of {maximum} months "
                       f"for {whom}")


def _not_before(merged: Merged, later: str, earlier: str, problems: Problems) -> None:
    record, row = merged.record, merged.row
    if not (record.sound(later) and record.sound(earlier)):
        return
    first, second = row.get(earlier), row.get(later)
    if first is not None and second is not None and second < first:
        shown = first.isoformat()
        problems.error(record.where.field(later), f"must not be before {earlier} {shown}")


def _removed_managers(connection: Connection, world: World, problems: Problems) -> None:
    """A reseller may not drop an account manager who still manages a stored customer."""
    removed: dict[str, set[str]] = {}
    for reseller_id, merged in world.merged["resellers"].items():
        if merged.stored is None or not merged.record.carries("account_managers"):
            continue
        before = {person["id"] for person in merged.stored["account_managers"] or []}
        after = {person["id"] for person in merged.row["account_managers"] or []}
        if before - after:
            removed[reseller_id] = before - after
    if not removed:
        return
    in_file = world.file_ids["customers"]
    orphans: dict[tuple[str, str], list[str]] = {}
    for reseller_id, manager, customer_id in managed_customers(connection, removed):
        if customer_id not in in_file:
            orphans.setdefault((reseller_id, manager), []).append(customer_id)
    for (reseller_id, manager), customers in sorted(orphans.items()):
        where = world.merged["resellers"][reseller_id].record.where.field("account_managers")
        problems.error(where, f"removes account manager {manager!r}, who still manages "
                              f"{_some(sorted(customers))}")


def _some(customer_ids: list[str]) -> str:
    named = ", ".join(repr(customer_id) for customer_id in customer_ids[:_LISTED])
    more = len(customer_ids) - _LISTED
    noun = "customer" if len(customer_ids) == 1 else "customers"
    return f"{noun} {named}" + (f" and {more} more" if more > 0 else "")
