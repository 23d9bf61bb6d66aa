"""One import, all or nothing: read, load, merge, check, then write in one transaction.

The stored rows are read inside the writing transaction, so what was checked is what
gets written: SQLite's transaction holds the write lock from its start; PostgreSQL's
runs at REPEATABLE READ, where a pass that changed a row this import then updates (say,
moved an anniversary date on) makes the write fail, and the import starts over on
the fresh state (a few times at most). Any error refuses the whole file, listing every
error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from worker.config.policy import Policy
from worker.errors import ImportRejected
from worker.importing.audit import open_import, record_changes
from worker.importing.checks import check_records
from worker.importing.codes import check_code_limit
from worker.importing.contacts import lift_changed_contacts
from worker.importing.existing import load_rows
from worker.importing.merge import Merged, World
from worker.importing.ownership import AUDITED, LABELS, OWNED, merge_record
from worker.importing.parse import Incoming, decode, first_by_id, read_sections
from worker.importing.problems import SECTIONS, Problems
from worker.importing.report import FieldChange, ImportReport, RecordReport
from worker.importing.shapes import SHAPES
from worker.importing.write import write_all

Records = dict[str, dict[str, Incoming]]

ATTEMPTS = 3
_SERIALIZATION_FAILURE = "40001"


def run_import(engine: Engine, raw: bytes | str, policy: Policy, *, dry_run: bool,
               started_at: datetime) -> ImportReport:
    problems = Problems()
    digest = hashlib.sha256(raw.encode() if isinstance(raw, str) else raw).hexdigest()
    document = decode(raw, problems)
    if problems.has_errors:
        raise ImportRejected(problems.errors())
    sections = read_sections(document, problems)
    records = {section: first_by_id(sections[section], problems) for section in SECTIONS}
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _attempt(engine, records, policy, problems.copy(), dry_run=dry_run,
                            stamp=(started_at, digest))
        except DBAPIError as error:
            if attempt == ATTEMPTS or not _serialization_failure(error):
                raise
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _attempt(engine: Engine, records: Records, policy: Policy, problems: Problems, *,
             dry_run: bool, stamp: tuple[datetime, str]) -> ImportReport:
    world = World(policy, {section: set(records[section]) for section in SECTIONS})
    with _connect(engine) as connection, connection.begin() as transaction:
        _plan_each_chunk(connection)
        _load(connection, world, records)
        _merge(world, records, problems)
        check_records(connection, world, problems)
        check_code_limit(connection, world, problems)
        if problems.has_errors:
            raise ImportRejected(problems.errors())
        reports = _record_reports(world)
        counts = write_all(connection, world)
        lift_changed_contacts(connection, world, stamp[0])
        import_id = None
        if dry_run:
            transaction.rollback()
        else:
            import_id = _audit(connection, stamp, counts, reports)
    return ImportReport(**counts, warnings=problems.warnings(), dry_run=dry_run,
                        records=tuple(report for report, _audited in reports),
                        import_id=import_id)


def _audit(connection: Connection, stamp: tuple[datetime, str], counts: dict[str, Any],
           reports: list[tuple[RecordReport, frozenset[str]]]) -> int:
    started_at, digest = stamp
    summary: dict[str, Any] = {name: asdict(section) for name, section in counts.items()}
    import_id = open_import(connection, started_at, digest, summary)
    record_changes(connection, import_id, started_at, reports)
    return import_id


def _record_reports(world: World) -> list[tuple[RecordReport, frozenset[str]]]:
    """Each record created, changed or noted, with the columns audited in its section."""
    found: list[tuple[RecordReport, frozenset[str]]] = []
    for section in SECTIONS:
        for record_id, merged in world.merged[section].items():
            if merged.is_new:
                found.append((RecordReport(section, record_id, "created"), AUDITED[section]))
                continue
            assert merged.stored is not None
            changes = tuple(
                FieldChange(LABELS.get(column, column), column, merged.stored.get(column), value)
                for column, value in merged.changes().items())
            if changes or merged.notes:
                outcome = "updated" if changes else "unchanged"
                found.append((RecordReport(section, record_id, outcome, changes,
                                           tuple(merged.notes)), AUDITED[section]))
    return found


def _connect(engine: Engine) -> Connection:
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection.execution_options(isolation_level="REPEATABLE READ")
    return connection


def _plan_each_chunk(connection: Connection) -> None:
    """psycopg prepares a statement run 5 times; PostgreSQL may then pick a generic plan
    in which `id IN ($1 … $500)` is a linear search per row (0.7 s a chunk instead of
    5 ms on 60k rows). Plan each chunk with its own values instead."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _serialization_failure(error: DBAPIError) -> bool:
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code == _SERIALIZATION_FAILURE


def _load(connection: Connection, world: World, records: Records) -> None:
    """The stored rows of the file's records and of every record they refer to."""
    for section in ("subscriptions", "purchase_authorizations", "reseller_change_codes"):
        world.stored[section] = load_rows(connection, section, records[section].keys())
    customer_ids = set(records["customers"]) | _referenced(
        world, records, "customer_id",
        ("subscriptions", "purchase_authorizations", "reseller_change_codes"),
    )
    world.stored["customers"] = load_rows(connection, "customers", customer_ids)
    reseller_ids = set(records["resellers"]) | _referenced(
        world, records, "reseller_id", ("customers", "reseller_change_codes")
    )
    world.stored["resellers"] = load_rows(connection, "resellers", reseller_ids)


def _referenced(world: World, records: Records, name: str,
                sections: Iterable[str]) -> set[str]:
    """The ids that field `name` holds in these sections, carried or stored."""
    found: set[str] = set()
    for section in sections:
        stored = world.stored[section]
        for record_id, record in records[section].items():
            value: Any = record.values.get(name) or stored.get(record_id, {}).get(name)
            if isinstance(value, str):
                found.add(value)
    return found


def _merge(world: World, records: Records, problems: Problems) -> None:
    """Merge section by section, so each section sees the ones it refers to merged."""
    for section in SECTIONS:
        required = SHAPES[section].required
        for record_id, record in records[section].items():
            stored = world.stored[section].get(record_id)
            if stored is None:
                for name in record.reading.missing(required):
                    problems.error(record.where.field(name), "required")
            row, notes = merge_record(record, stored, world)
            world.merged[section][record_id] = Merged(record, stored, row, OWNED[section], notes)
