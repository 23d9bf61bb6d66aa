"""The audit trail of imports: each import that writes gets a row in `imports`, and every
value the rules use that it changes on a stored record gets a `transitions` row naming
that import as its reason (`import_id`, reason `import`), so a record's history shows
why a term or an anniversary moved. New records are not itemised: their creation is the
import itself.

Every audit row an import writes goes through `record_changes`, in the import's own
transaction: one place to hook anything that must follow each audit row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from worker.db.schema import IMPORTS, TRANSITIONS
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
    rows = [
        {"pass_id": None, "import_id": import_id, "record_type": RECORD_TYPES[record.section],
         "record_id": record.id, "field": change.column, "from_value": _value(change.before),
         "to_value": _value(change.after), "reason": REASON,
         "effective_on": started_at.date(), "effective_at": started_at}
        for record, audited in records
        for change in record.changes
        if change.column in audited
    ]
    if rows:
        connection.execute(insert(TRANSITIONS), rows)
    return len(rows)


def _value(value: Any) -> str | None:
    return None if value is None else shown(value)
