"""Writing the merged records: per section one multi-row INSERT and a few executemany
UPDATEs (one per set of changed columns), in foreign-key order. Both work the same on
SQLite and PostgreSQL.

Every record written gets `next_check_at = EPOCH` so that the next pass looks at it
again; so do the subscriptions and codes of a changed customer, and the customer of a
changed purchase authorization. A customer moved to another reseller takes its stored
subscriptions along (their denormalised `reseller_id`). Resellers keep `next_digest_at`.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, bindparam, insert, update

from worker.db.schema import EPOCH
from worker.importing.existing import chunks, table
from worker.importing.merge import Merged, Row, World
from worker.importing.ownership import OWNED
from worker.importing.problems import SECTIONS
from worker.importing.report import SectionCounts

_CHECKED = frozenset({"customers", "subscriptions", "reseller_change_codes"})  # next_check_at


def write_all(connection: Connection, world: World) -> dict[str, SectionCounts]:
    counts: dict[str, SectionCounts] = {}
    touched: dict[str, list[Merged]] = {}
    for section in SECTIONS:
        counts[section], touched[section] = _write_section(connection, section, world)
        if section == "customers":
            _follow_reseller_moves(connection, touched[section])
    _reset_related(connection, touched)
    return counts


def _write_section(connection: Connection, section: str,
                   world: World) -> tuple[SectionCounts, list[Merged]]:
    new: list[Row] = []
    changed: dict[frozenset[str], list[Row]] = {}
    touched: list[Merged] = []
    unchanged = 0
    for merged in world.merged[section].values():
        if merged.is_new:
            new.append(_stamped(section, {name: merged.row[name] for name in OWNED[section]}))
        elif changes := merged.changes():
            changes = _stamped(section, changes)
            changed.setdefault(frozenset(changes), []).append({"b_id": merged.row["id"], **changes})
        else:
            unchanged += 1
            continue
        touched.append(merged)
    target = table(section)
    if new:
        connection.execute(insert(target), new)
    for rows in changed.values():
        connection.execute(update(target).where(target.c.id == bindparam("b_id")), rows)
    updated = sum(len(rows) for rows in changed.values())
    return SectionCounts(len(new), updated, unchanged), touched


def _stamped(section: str, values: Row) -> Row:
    if section in _CHECKED:
        values["next_check_at"] = EPOCH
    return values


def _follow_reseller_moves(connection: Connection, customers: list[Merged]) -> None:
    moves = [
        {"b_customer": merged.row["id"], "reseller_id": merged.row["reseller_id"]}
        for merged in customers
        if merged.stored is not None
        and merged.stored["reseller_id"] != merged.row["reseller_id"]
    ]
    if moves:
        subscriptions = table("subscriptions")
        connection.execute(
            update(subscriptions).where(subscriptions.c.customer_id == bindparam("b_customer")),
            moves,
        )


def _reset_related(connection: Connection, touched: dict[str, list[Merged]]) -> None:
    customers = {m.row["id"] for m in touched["customers"] if not m.is_new}
    for section in ("subscriptions", "reseller_change_codes"):
        _reset(connection, section, "customer_id", customers)
    paying = set()
    for merged in touched["purchase_authorizations"]:
        paying.add(merged.row["customer_id"])
        if merged.stored is not None:
            paying.add(merged.stored["customer_id"])
    _reset(connection, "customers", "id", paying)


def _reset(connection: Connection, section: str, column: str, ids: Collection[str]) -> None:
    target = table(section)
    for chunk in chunks(ids):
        connection.execute(
            update(target).where(target.c[column].in_(chunk)).values(next_check_at=EPOCH)
        )
