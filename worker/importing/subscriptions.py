"""Merging a subscription: the fields the worker may have moved on since the portal's copy.

* `anniversary_date`: a re-imported date that is not later than the stored one changes
  nothing (the worker moves the AD on at each renewal); a later one replaces it and the
  anchor day is computed again from the start date and the new AD.
* `renewal`: identified by its order date; one already applied (`ordered_on` on or
  before `renewal_spent_through`) is not recorded again, and `null` clears only a
  renewal not yet applied.
* `pending_change`: the same term as the one pending changes nothing; so does, when
  none is pending, a change to the term the subscription already has (the worker
  applied it: it clears the change and stores the new term). Another one is due at the
  AD the subscription holds once this import is applied; `null` clears it.
* `term_months`: stored; it decides `first_term_extended` only while the subscription has
  never been evaluated (status `pending_start`).
* `reseller_id` follows the customer's reseller.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from worker.calendar import anchor_day
from worker.importing.existing import Row
from worker.importing.merge import World, apply, start_row
from worker.importing.parse import Incoming

EXTENDED_AFTER_MONTHS = 12  # a first term longer than a year is an extended term (004)
NEVER_EVALUATED = "pending_start"
_anchor_day = lru_cache(maxsize=16_384)(anchor_day)  # portfolios share a few start/AD pairs


def merge_subscription(record: Incoming, stored: Row | None, world: World) -> Row:
    values = record.values
    row = start_row("subscriptions", record.id, stored, licences=0, auto_renew=False,
                    first_term_extended=False)
    for name in ("customer_id", "product", "start_date"):
        apply(row, values, name)
    apply(row, values, "licences", 0)
    apply(row, values, "auto_renew", False)
    _term(row, values, stored)
    _anniversary(row, values, stored)
    if "renewal" in values:
        _renewal(row, values["renewal"])
    if "pending_change" in values:
        _pending_change(row, values["pending_change"], stored)
    customer = world.row("customers", row["customer_id"])
    if customer is not None and customer.get("reseller_id") is not None:
        row["reseller_id"] = customer["reseller_id"]
    return row


def _term(row: Row, values: Row, stored: Row | None) -> None:
    if "term_months" not in values:
        return
    row["term_months"] = values["term_months"]
    if stored is None or stored.get("status") == NEVER_EVALUATED:
        row["first_term_extended"] = values["term_months"] > EXTENDED_AFTER_MONTHS


def _anniversary(row: Row, values: Row, stored: Row | None) -> None:
    new: date | None = values.get("anniversary_date")
    if new is None:
        return
    if stored is not None and new <= stored["anniversary_date"]:
        return
    row["anniversary_date"] = new
    if row.get("start_date") is not None:
        row["anchor_day"] = _anchor_day(row["start_date"], new)


def _applied(ordered_on: date | None, spent_through: date | None) -> bool:
    return ordered_on is not None and spent_through is not None and ordered_on <= spent_through


def _renewal(row: Row, renewal: dict[str, Any] | None) -> None:
    spent_through = row.get("renewal_spent_through")
    if renewal is None:
        if not _applied(row.get("renewal_ordered_on"), spent_through):
            row["renewal_ordered_on"] = row["renewal_years"] = None
        return
    if _applied(renewal["ordered_on"], spent_through):
        return
    row["renewal_ordered_on"] = renewal["ordered_on"]
    row["renewal_years"] = renewal["years"]


def _pending_change(row: Row, change: dict[str, Any] | None, stored: Row | None) -> None:
    if change is None:
        row["pending_term_months"] = row["pending_due_ad"] = None
        return
    if change["term_months"] == row.get("pending_term_months"):
        return
    if stored is not None and row.get("pending_term_months") is None \
            and change["term_months"] == stored["term_months"]:
        return  # the worker already applied it (it clears the change and sets the term)
    row["pending_term_months"] = change["term_months"]
    row["pending_due_ad"] = row.get("anniversary_date")
