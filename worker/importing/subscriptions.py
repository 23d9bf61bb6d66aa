"""The subscription fields the worker moves on after the portal's copy, and how a
re-import of them merges (their entries in `worker.importing.ownership` say it briefly).

The rule throughout: the portal's word is compared with what the portal said before, not
with what the worker made of it since, so importing the same file twice changes nothing
whatever passes ran in between (README, "Import format").

* `anniversary_date`: a re-imported date not later than the held one changes nothing
  (the worker moves the AD on at each renewal), and the report says so unless it is an
  AD the worker moved on from; a later one replaces it, and the anchor day is computed
  again from the start date and the new AD.
* `renewal`: identified by its order date; one already applied (`ordered_on` on or before
  `renewal_spent_through`) is spent, and `null` clears only a renewal not yet applied.
* `pending_change`: compared with the change last imported. A different one waits for the
  AD the subscription holds once this import is applied; `null` withdraws the one
  waiting. A change to the term already running, with none waiting, is spent (applied).
* `term_months`: the term the portal sold, kept apart from the worker's current term.
  Equal to the one last imported: nothing. Different: before the subscription has
  started it replaces the current term (and decides whether the first term is
  extended); after, it is a new decision that takes effect at the end of the current
  period, as a pending change does. Where the term last imported is not known (rows
  from before migration 0005) it is recorded and the current term stays.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from worker.importing.carry import Carried
from worker.rules.calendar import add_months, anchor_day

EXTENDED_AFTER_MONTHS = 12  # a first term longer than a year is an extended term (004)
NOT_STARTED = "pending_start"
_anchor_day = lru_cache(maxsize=16_384)(anchor_day)  # portfolios share a few start/AD pairs


def _months(count: int) -> str:
    return f"{count} month" if count == 1 else f"{count} months"


def _started(carried: Carried) -> bool:
    return carried.stored is not None and carried.stored.get("status") != NOT_STARTED


def anniversary(carried: Carried) -> None:
    new: date = carried.value
    row, stored = carried.row, carried.stored
    if stored is not None and new <= stored["anniversary_date"]:
        if not _passed_on_the_way(new, stored["anniversary_date"], stored["anchor_day"]):
            carried.note(f"ignored, earlier than the one held ({stored['anniversary_date']})")
        return
    row["anniversary_date"] = new
    if row.get("start_date") is not None:
        row["anchor_day"] = _anchor_day(row["start_date"], new)


def _passed_on_the_way(earlier: date, held: date, anchor: int) -> bool:
    """Whether the held AD is `earlier` moved on by whole months on the anchor day: the
    portal's copy of an AD the worker has since moved on from (silently ignored)."""
    months = (held.year - earlier.year) * 12 + held.month - earlier.month
    return add_months(earlier, 0, anchor) == earlier and add_months(earlier, months,
                                                                    anchor) == held


def _applied(ordered_on: date | None, spent_through: date | None) -> bool:
    return ordered_on is not None and spent_through is not None and ordered_on <= spent_through


def renewal(carried: Carried) -> None:
    row, value = carried.row, carried.value
    spent_through = row.get("renewal_spent_through")
    if value is None:
        if _applied(row.get("renewal_ordered_on"), spent_through):
            return  # the renewal held is spent; nothing is left to withdraw
        row["renewal_ordered_on"] = row["renewal_years"] = None
        return
    if _applied(value["ordered_on"], spent_through):
        if value["ordered_on"] != row.get("renewal_ordered_on"):
            carried.note(f"ignored, a renewal ordered on {value['ordered_on']} is already "
                         f"applied (renewals applied through {spent_through})")
        return
    row["renewal_ordered_on"] = value["ordered_on"]
    row["renewal_years"] = value["years"]


def pending_change(carried: Carried) -> None:
    row, stored = carried.row, carried.stored
    value: dict[str, Any] | None = carried.value
    months = value["term_months"] if value is not None else None
    if stored is not None and months == stored.get("imported_pending_term_months"):
        return  # what the portal said last time: the worker may have applied it since
    row["imported_pending_term_months"] = months
    if months is None:
        row["pending_term_months"] = row["pending_due_ad"] = None
        return
    if stored is not None and row.get("pending_term_months") is None \
            and months == row["current_term_months"]:
        carried.note(f"ignored, the current term is already {_months(months)} "
                     "(a pending change already applied is spent)")
        return
    row["pending_term_months"] = months
    row["pending_due_ad"] = row.get("anniversary_date")


def term(carried: Carried) -> None:
    row, stored, months = carried.row, carried.stored, carried.value
    if not _started(carried):
        row.update(term_months=months, current_term_months=months,
                   first_term_extended=months > EXTENDED_AFTER_MONTHS)
        return
    assert stored is not None
    sold = stored.get("term_months")
    if months == sold:
        return
    row["term_months"] = months
    if sold is None:
        if months != row["current_term_months"]:
            carried.note(f"recorded as the term sold; the current term "
                         f"({_months(row['current_term_months'])}) stays: the term imported "
                         "before is not known")
        return
    if months == row["current_term_months"] and row.get("pending_term_months") is None:
        return  # the new decision is the term already running
    row["pending_term_months"] = months
    row["pending_due_ad"] = row.get("anniversary_date")
    carried.note(f"a new term sold: takes effect at the end of the current period "
                 f"({row.get('anniversary_date')})")


def follow_customer(carried: Carried) -> None:
    customer = carried.world.row("customers", carried.row.get("customer_id"))
    if customer is not None and customer.get("reseller_id") is not None:
        carried.row["reseller_id"] = customer["reseller_id"]
