"""Who owns each imported field, and what a re-import may do to it: the one table.

Every field a record of the import file may carry has one entry in `OWNERSHIP`, in the
order the merge applies them. `merge_record` reads nothing else: an entry's `merge` sets
its `columns`, and only those (plus the id) are ever written by an import.

* owner `portal`: the portal's fact. Each import that carries the field replaces the
  held value (`null` sets the default, or clears); the worker never changes it.
* owner `worker`: the worker moves the value on after the portal's copy (a new AD at each
  renewal, the current term, a change applied, a renewal spent). A re-import is judged
  against what the portal said before, so the same file imported twice changes nothing
  whatever passes ran in between; `reimport` says what a different value does.

`audit` names the columns the rules use: an import that changes one of a stored record
records it in the audit trail (`transitions`), with the import as its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from worker.importing import subscriptions as sub
from worker.importing.carry import Carried, replace
from worker.importing.merge import Note, Row, World
from worker.importing.parse import Incoming

Merge = Callable[[Carried], None]
When = Literal["carried", "new_or_carried", "always"]


@dataclass(frozen=True, slots=True)
class Ownership:
    field: str                 # as the file names it
    owner: Literal["portal", "worker"]
    reimport: str              # what a re-import of it does
    columns: tuple[str, ...]   # what its merge may write
    merge: Merge
    audit: tuple[str, ...] = ()  # columns the rules use: an import's change is audited
    when: When = "carried"     # also merged for a new record, or for every record


def _portal(field: str, default: object = None, *, audit: bool = False,
            column: str | None = None) -> Ownership:
    name = column or field
    reimport = "replaces the held value" + ("" if default is None else f" (null: {default!r})")
    return Ownership(field, "portal", reimport, (name,), replace(default, column=column),
                     (name,) if audit else ())


def _sender_name(carried: Carried) -> None:
    carried.row["sender_name"] = carried.value or carried.row["name"]


def _customer_locale(carried: Carried) -> None:
    reseller = carried.world.row("resellers", carried.row["reseller_id"]) or {}
    default = reseller.get("locale") or carried.world.policy.sender.default_locale
    carried.row["locale"] = carried.value or default


def _invitation(carried: Carried) -> None:
    invitation = carried.value or {"status": None, "sent_at": None}
    carried.row["invitation_status"] = invitation["status"]
    if "sent_at" in invitation:  # absent keeps the time held
        carried.row["invitation_sent_at"] = invitation["sent_at"]


def _reseller_default(name: str) -> Merge:
    def merge(carried: Carried) -> None:
        sender = carried.world.policy.sender
        default = sender.default_locale if name == "locale" else sender.default_timezone
        carried.row[name] = carried.value if carried.value is not None else default

    return merge


OWNERSHIP: Mapping[str, tuple[Ownership, ...]] = {
    "resellers": (
        _portal("name"),
        _portal("email"),
        Ownership("sender_name", "portal", "replaces the held value (absent on creation or "
                  "null: the name)", ("sender_name",), _sender_name, when="new_or_carried"),
        _portal("reply_to"),
        Ownership("locale", "portal", "replaces the held value (null: the default locale)",
                  ("locale",), _reseller_default("locale"), when="new_or_carried"),
        Ownership("timezone", "portal", "replaces the held value (null: the default "
                  "timezone)", ("timezone",), _reseller_default("timezone"),
                  audit=("timezone",), when="new_or_carried"),
        _portal("account_managers", []),
    ),
    "customers": (
        _portal("reseller_id"),
        _portal("name"),
        _portal("timezone", audit=True),
        _portal("country"),
        _portal("managed_by"),
        _portal("segment", "commercial"),
        _portal("admins", []),
        _portal("account_state", "active", audit=True),
        Ownership("locale", "portal", "replaces the held value (absent on creation or null: "
                  "the reseller's)", ("locale",), _customer_locale, when="new_or_carried"),
        Ownership("invitation", "portal", "replaces the held status and time (null clears "
                  "both)", ("invitation_status", "invitation_sent_at"), _invitation,
                  audit=("invitation_status", "invitation_sent_at")),
    ),
    "subscriptions": (
        _portal("customer_id"),
        _portal("product"),
        _portal("licences", 0),
        _portal("auto_renew", False, audit=True),
        _portal("start_date", audit=True),
        Ownership("anniversary_date", "worker",
                  "a later date replaces the held one (anchor day computed again); the same "
                  "or an earlier one is ignored: the worker moves the AD on",
                  ("anniversary_date", "anchor_day"), sub.anniversary,
                  audit=("anniversary_date", "anchor_day")),
        Ownership("renewal", "worker",
                  "identified by `ordered_on`: one already applied is spent and ignored; "
                  "another replaces the renewal held; null clears only one not yet applied",
                  ("renewal_ordered_on", "renewal_years"), sub.renewal,
                  audit=("renewal_ordered_on", "renewal_years")),
        Ownership("pending_change", "worker",
                  "compared with the change last imported: the same changes nothing (it may "
                  "be applied and spent); another waits for the AD held; null withdraws the "
                  "one waiting; a change to the term already running is spent",
                  ("imported_pending_term_months", "pending_term_months", "pending_due_ad"),
                  sub.pending_change, audit=("pending_term_months", "pending_due_ad")),
        Ownership("term_months", "worker",
                  "the term sold, compared with the one last imported: the same changes "
                  "nothing; another is a new decision that takes effect at the end of the "
                  "current period, like a pending change (before the start date it replaces "
                  "the current term)",
                  ("term_months", "current_term_months", "first_term_extended",
                   "pending_term_months", "pending_due_ad"), sub.term,
                  audit=("term_months", "current_term_months", "first_term_extended",
                         "pending_term_months", "pending_due_ad")),
        Ownership("reseller_id", "worker", "not in the file: follows the customer's reseller",
                  ("reseller_id",), sub.follow_customer, when="always"),
    ),
    "purchase_authorizations": (
        _portal("customer_id"),
        _portal("requested_on", audit=True),
        _portal("paid_on", audit=True),
    ),
    "reseller_change_codes": (
        _portal("customer_id"),
        _portal("reseller_id"),
        _portal("issued_at", audit=True),
        _portal("used_at", audit=True),
    ),
}

DEFAULTS: Mapping[str, Row] = {
    "resellers": {"account_managers": []},
    "customers": {"segment": "commercial", "admins": [], "account_state": "active"},
    "subscriptions": {"licences": 0, "auto_renew": False, "first_term_extended": False},
}
"""Values of a new record before its fields are merged (for the fields a file may omit)."""


def _columns(section: str) -> tuple[str, ...]:
    names = ["id"]
    for entry in OWNERSHIP[section]:
        names += [column for column in entry.columns if column not in names]
    return tuple(names)


OWNED: Mapping[str, tuple[str, ...]] = {section: _columns(section) for section in OWNERSHIP}
"""The columns an import writes; every other column is the worker's alone."""

READ_ONLY: Mapping[str, tuple[str, ...]] = {"subscriptions": ("status", "renewal_spent_through")}
"""Columns of the worker's that a merge reads but never writes."""

AUDITED: Mapping[str, frozenset[str]] = {
    section: frozenset(column for entry in entries for column in entry.audit)
    for section, entries in OWNERSHIP.items()
}

LABELS: Mapping[str, str] = {
    "renewal_ordered_on": "renewal.ordered_on",
    "renewal_years": "renewal.years",
    "pending_term_months": "pending_change.term_months",
    "pending_due_ad": "pending_change.due_on",
    "imported_pending_term_months": "pending_change.term_months (as imported)",
    "invitation_status": "invitation.status",
    "invitation_sent_at": "invitation.sent_at",
}
"""How the report names a column that is not a field of the file."""


def start_row(section: str, record_id: str | None, stored: Row | None) -> Row:
    """The stored row to change, or a new one with every owned column (defaults or None)."""
    if stored is not None:
        return dict(stored)
    row: Row = dict.fromkeys(OWNED[section])
    row.update(DEFAULTS.get(section, {}), id=record_id)
    return row


def merge_record(record: Incoming, stored: Row | None, world: World) -> tuple[Row, list[Note]]:
    """The stored row changed by the fields `record` carries, each by its entry's merge."""
    row = start_row(record.section, record.id, stored)
    notes: list[Note] = []
    for entry in OWNERSHIP[record.section]:
        carried = record.carries(entry.field)
        if carried or entry.when == "always" or (entry.when == "new_or_carried" and
                                                 stored is None):
            value = record.values.get(entry.field)
            entry.merge(Carried(entry.field, value, row, stored, world, notes))
    return row, notes
