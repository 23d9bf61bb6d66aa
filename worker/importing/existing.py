"""The stored rows an import touches or refers to: one SELECT per chunk of ids.

No row locks: the import reads in a REPEATABLE READ transaction on PostgreSQL (a pass
that changes a row this import then updates makes the import retry) and under SQLite's
write lock (BEGIN IMMEDIATE). `SELECT … FOR UPDATE` in chunks was tried and dropped: on
PostgreSQL a second locking read of rows locked by an earlier import scanned them
pathologically slowly (90 s for 60k rows).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime

from sqlalchemy import Connection, Table, select

from worker.db.schema import metadata
from worker.importing.merge import Row
from worker.importing.ownership import OWNED, READ_ONLY

CHUNK = 500  # ids per IN (…): well under SQLite's oldest limit of 999 parameters


def table(section: str) -> Table:
    return metadata.tables[section]


def chunks(ids: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start:start + CHUNK]


def load_rows(connection: Connection, section: str, ids: Collection[str]) -> dict[str, Row]:
    """The stored rows of `section` among `ids`, by id (owned and read-only columns)."""
    source = table(section)
    columns = [source.c[name] for name in OWNED[section] + READ_ONLY.get(section, ())]
    rows: dict[str, Row] = {}
    for chunk in chunks(ids):
        query = select(*columns).where(source.c.id.in_(chunk))
        for row in connection.execute(query).mappings():
            rows[row["id"]] = dict(row)
    return rows


def stored_codes(connection: Connection, reseller_ids: Collection[str], since: datetime,
                 until: datetime) -> list[tuple[str, str, datetime]]:
    """(id, reseller_id, issued_at) of the stored codes of these resellers in a window."""
    source = table("reseller_change_codes")
    found: list[tuple[str, str, datetime]] = []
    for chunk in chunks(reseller_ids):
        query = select(source.c.id, source.c.reseller_id, source.c.issued_at).where(
            source.c.reseller_id.in_(chunk),
            source.c.issued_at >= since,
            source.c.issued_at < until,
        )
        found.extend((row.id, row.reseller_id, row.issued_at) for row in connection.execute(query))
    return found


def managed_customers(connection: Connection,
                      removed: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(reseller_id, manager id, customer id) of stored customers managed by `removed`."""
    source = table("customers")
    found: list[tuple[str, str, str]] = []
    for reseller_id, managers in removed.items():
        query = select(source.c.id, source.c.managed_by).where(
            source.c.reseller_id == reseller_id, source.c.managed_by.in_(sorted(managers))
        )
        found.extend((reseller_id, row.managed_by, row.id) for row in connection.execute(query))
    return found
