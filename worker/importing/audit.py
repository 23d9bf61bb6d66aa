"""The audit trail of imports: each import that writes gets a row in `imports`, and every
value the rules use that it changes on a stored record gets a `transitions` row naming
that import as its reason (`import_id`, reason `import`), so a record's history shows
why a term or an anniversary moved. New records are not itemised: their creation is the
import itself.

Every audit row an import writes goes through `record_changes`, in the import's own
transaction, and gets its event there (worker.events): one per audit row, plus
`customer.account_state_changed` where a person's state moves the effective one. The
events insert is the transaction's last statement (it holds the feed's lock to commit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from worker.db.schema import CODES, CUSTOMERS, IMPORTS, INVOICES, SUBSCRIPTIONS, TRANSITIONS
from worker.events.build import Row, account_state_event, transition_event
from worker.events.write import insert_events
from worker.importing.carry import shown
from worker.importing.report import RecordReport

REASON = "import"
RECORD_TYPES = {
    "resellers": "reseller", "customers": "customer", "subscriptions": "subscription",
    "purchase_authorizations": "purchase_authorization", "reseller_change_codes": "code",
}


def open_import(connection: Connection, started_at: datetime, digest: str,
                counts: dict[str, Any]) -> int:
    """The import's own row: its id is the reason of the audit rows it writes."""
    result = connection.execute(
        insert(IMPORTS).values(started_at=started_at, digest=digest, counts=counts)
        .returning(IMPORTS.c.id))
    return int(result.scalar_one())


def record_changes(connection: Connection, import_id: int, started_at: datetime,
                   records: list[tuple[RecordReport, frozenset[str]]]) -> int:
    """One `transitions` row per audited column each record changes; how many."""
    rows: list[dict[str, Any]] = [
        {"pass_id": None, "import_id": import_id, "record_type": RECORD_TYPES[record.section],
         "record_id": record.id, "field": change.column, "from_value": _value(change.before),
         "to_value": _value(change.after), "reason": REASON,
         "effective_on": started_at.date(), "effective_at": started_at}
        for record, audited in records
        for change in record.changes
        if change.column in audited
    ]
    if not rows:
        return 0
    ids = connection.execute(
        insert(TRANSITIONS).returning(TRANSITIONS.c.id, sort_by_parameter_order=True), rows,
    ).scalars().all()
    about = _context(connection, rows)
    events: list[Row] = []
    for row, transition_id in zip(rows, ids, strict=True):
        facts = about.get((row["record_type"], row["record_id"]), {})
        events.append(transition_event(row, transition_id, facts, started_at))
        if (row["record_type"], row["field"]) == ("customer", "account_state"):
            standing = str(facts.get("payment_standing") or "current")
            moved = account_state_event(
                row["record_id"], facts.get("reseller_id"),
                (str(row["from_value"] or "active"), standing),
                (str(row["to_value"] or "active"), standing),
                started_at, cause="person")
            if moved is not None:
                events.append(moved)
    insert_events(connection, events, started_at)
    return len(rows)


def _context(connection: Connection, rows: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """What each audited record's events tell beside the change: its customer, reseller,
    anniversary date and payment standing, as the import left them."""
    wanted: dict[str, set[str]] = {}
    for row in rows:
        wanted.setdefault(row["record_type"], set()).add(row["record_id"])
    found: dict[tuple[str, str], Any] = {
        ("reseller", record_id): {"reseller_id": record_id}
        for record_id in wanted.get("reseller", ())}
    queries = {
        "subscription": select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.customer_id,
                               SUBSCRIPTIONS.c.reseller_id, SUBSCRIPTIONS.c.anniversary_date),
        "customer": select(CUSTOMERS.c.id, CUSTOMERS.c.reseller_id,
                           CUSTOMERS.c.payment_standing),
        "code": select(CODES.c.id, CODES.c.customer_id, CODES.c.reseller_id),
        "purchase_authorization": select(INVOICES.c.id, INVOICES.c.customer_id,
                                         CUSTOMERS.c.reseller_id)
        .join(CUSTOMERS, CUSTOMERS.c.id == INVOICES.c.customer_id),
    }
    tables = {"subscription": SUBSCRIPTIONS, "customer": CUSTOMERS, "code": CODES,
              "purchase_authorization": INVOICES}
    for record_type, query in queries.items():
        if record_type in wanted:
            ids = wanted[record_type]
            for found_row in connection.execute(query.where(tables[record_type].c.id.in_(ids))):
                found[(record_type, found_row.id)] = dict(found_row._mapping)
    return found


def _value(value: Any) -> str | None:
    return None if value is None else shown(value)
