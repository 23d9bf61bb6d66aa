"""Carries out what rules decided: record updates, the audit trail, notices, cancellations.

Everything a pass decides about one chunk of records is gathered in a `Batch` and written
in the chunk's transaction. "Once" is the database's job: a notice is inserted with
ON CONFLICT DO NOTHING on its (kind, ref, occasion, audience) key, so no re-run and no
second process can queue it twice.

Events (worker.events): `write` reads back the id of every audit row it inserts and of
every notice it cancels, and builds their events; `write_events` inserts them, last in
the chunk's transaction (it takes the feed's lock, held until commit). A chunk rolled
back takes its events with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.db.schema import MESSAGES, NOTIFICATIONS, TRANSITIONS
from worker.events.build import account_state_events, transition_event
from worker.events.write import insert_events, notice_events
from worker.mail.decisions import WAITING
from worker.passes.snapshots import CustomerInfo, ResellerInfo
from worker.rules.model import Change, Notice
from worker.rules.notices import AUDIENCES, CUSTOMER, FAMILY_OF, RESELLER


@dataclass(frozen=True, slots=True)
class Delivery:
    """One audience of a notice: who, in which language and timezone."""

    audience: str
    recipients: tuple[str, ...]
    names: tuple[str, ...]
    locale: str
    timezone: str


def deliveries(
    kind: str, customer: CustomerInfo | None, reseller: ResellerInfo
) -> list[Delivery]:
    """docs/rules.md "Who receives what": customer admins; the account manager or reseller."""
    found: list[Delivery] = []
    for audience in AUDIENCES[kind]:
        if audience == CUSTOMER and customer is not None:
            found.append(Delivery(CUSTOMER, tuple(p.email for p in customer.admins),
                                  tuple(p.name for p in customer.admins), customer.locale,
                                  customer.zone.key))
        elif audience == RESELLER and customer is not None:
            manager = reseller.managers.get(customer.managed_by or "")
            email, name = (manager.email, manager.name) if manager else (
                reseller.email, reseller.name)
            found.append(Delivery(RESELLER, (email,), (name,), reseller.locale, reseller.timezone))
        else:  # the requesting reseller's own address
            found.append(Delivery(RESELLER, (reseller.email,), (reseller.name,),
                                  reseller.locale, reseller.timezone))
    return [delivery for delivery in found if delivery.recipients]


@dataclass
class Batch:
    """What one chunk of a pass will write, gathered before the writing starts."""

    pass_id: int
    moment: datetime
    written_at: datetime  # the real time of the chunk (its events' `created_at`)
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    live: list[tuple[str, str, tuple[str, str, str] | None]] = field(default_factory=list)
    about: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def update(self, table: str, row_id: str, **values: Any) -> None:
        """Queue an update; rows of one table that set the same columns go out together."""
        group = f"{table}:{','.join(sorted(values))}"
        self.updates.setdefault(group, []).append({"b_id": row_id, **values})

    def record(
        self, record_type: str, record_id: str, changes: tuple[Change, ...], **about: Any
    ) -> None:
        """Audit `changes`; `about` is the record's context its events carry
        (customer_id, reseller_id, anniversary_date, the person's account_state)."""
        if changes:
            self.about[(record_type, record_id)] = about
        for change in changes:
            self.transitions.append({
                "pass_id": self.pass_id, "record_type": record_type, "record_id": record_id,
                "field": change.field, "from_value": change.from_value,
                "to_value": change.to_value, "reason": change.reason,
                "effective_on": change.effective_on, "effective_at": change.effective_at,
            })

    def queue(
        self, notice: Notice, customer: CustomerInfo | None, reseller: ResellerInfo,
        context: dict[str, Any],
    ) -> None:
        for delivery in deliveries(notice.kind, customer, reseller):
            self.notifications.append({
                "kind": notice.kind, "ref": notice.ref, "occasion": notice.occasion,
                "audience": delivery.audience, "occasion_date": notice.occasion_date,
                "reseller_id": reseller.id, "recipients": list(delivery.recipients),
                "locale": delivery.locale, "timezone": delivery.timezone,
                "payload": {**context, "facts": notice.facts,
                            "recipient_names": list(delivery.names),
                            "reseller": reseller.public()},
                "status": "queued", "created_at": self.moment, "pass_id": self.pass_id,
                "attempts": 0,
            })

    def keep_only(self, ref: str, family: str, key: tuple[str, str, str] | None) -> None:
        """Any waiting notice of `family` about `ref` other than `key` is overtaken."""
        self.live.append((ref, family, key))


@dataclass
class Written:
    """What a batch actually changed, for the pass summary."""

    written_at: datetime  # the batch's real time, for its events
    queued: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    queued_rows: list[dict[str, Any]] = field(default_factory=list)
    queued_ids: list[int] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def write(connection: Connection, batch: Batch, tables: dict[str, Table]) -> Written:
    """Write the batch; its events are built, and inserted by `write_events`."""
    written = Written(written_at=batch.written_at)
    for group, rows in batch.updates.items():
        table = tables[group.split(":", 1)[0]]
        columns: dict[str, Any] = {key: bindparam(key) for key in rows[0] if key != "b_id"}
        statement = update(table).where(table.c.id == bindparam("b_id")).values(columns)
        connection.execute(statement, rows)
    written.events += _audit(connection, batch)
    cancelled = _cancel_all_overtaken(connection, batch.live)
    written.cancelled += len(cancelled)
    written.events += notice_events(cancelled, "cancelled", batch.moment)
    for row, new_id in _insert_all_once(connection, batch.notifications, batch.pass_id):
        written.queued[row["kind"]] += 1
        written.queued_rows.append(row)
        written.queued_ids.append(new_id)
    return written


def write_events(connection: Connection, written: Written) -> None:
    """Insert the events `write` built: the last statement of the chunk's transaction,
    since it holds the feed's lock until commit (worker.events.write)."""
    written.events = insert_events(connection, written.events, written.written_at)


def _audit(connection: Connection, batch: Batch) -> list[dict[str, Any]]:
    """Insert the audit rows and build their events: one per row, and the effective
    account-state moves they imply."""
    if not batch.transitions:
        return []
    ids = _insert_audit_rows(connection, batch)
    events = []
    for row, transition_id in zip(batch.transitions, ids, strict=True):
        about = batch.about.get((row["record_type"], row["record_id"]), {})
        events.append(transition_event(row, transition_id, about, batch.moment))
        events += account_state_events([(row, about)], batch.moment)
    return events


def _insert_audit_rows(connection: Connection, batch: Batch) -> list[int]:
    """One executemany without RETURNING (a multi-row RETURNING insert costs psycopg about
    0.1 ms a row to parse), then one indexed SELECT of this pass's rows for these records:
    the ids of each record's rows, ascending, are those of its changes in order (a record
    is claimed by one chunk of a pass only; should an earlier row match, the newest are
    taken)."""
    connection.execute(TRANSITIONS.insert(), batch.transitions)
    columns = TRANSITIONS.c
    wanted = Counter((row["record_type"], row["record_id"]) for row in batch.transitions)
    found = connection.execute(
        select(columns.id, columns.record_type, columns.record_id)
        .where(columns.pass_id == batch.pass_id,
               columns.record_type.in_({kind for kind, _ in wanted}),
               columns.record_id.in_({record for _, record in wanted}))
        .order_by(columns.id))
    by_record: dict[tuple[str, str], list[int]] = {}
    for row in found:
        by_record.setdefault((row.record_type, row.record_id), []).append(row.id)
    queues = {key: iter(by_record.get(key, [])[-count:]) for key, count in wanted.items()}
    ids = [next(queues[(row["record_type"], row["record_id"])], None)
           for row in batch.transitions]
    if None in ids:
        raise RuntimeError(f"pass {batch.pass_id}: audit rows written but not all found "
                           "again; the chunk is rolled back")
    return [int(found_id) for found_id in ids if found_id is not None]


_KEY = ("kind", "ref", "occasion", "audience")


def _insert_all_once(
    connection: Connection, rows: list[dict[str, Any]], pass_id: int
) -> list[tuple[dict[str, Any], int]]:
    """Insert every notice whose key is new (ON CONFLICT DO NOTHING): (row, id) of each.

    One executemany without RETURNING (psycopg pipelines it, where a multi-row RETURNING
    insert is a huge statement that psycopg parses at about 0.1 ms a row), then one
    indexed SELECT of the keys this pass owns: a key an earlier pass queued keeps that
    pass's id, so it is not counted again.
    """
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        first.setdefault(tuple(row[k] for k in _KEY), row)
    if not first:
        return []
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    connection.execute(insert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=list(_KEY)),
                       list(first.values()))
    columns = NOTIFICATIONS.c
    mine = connection.execute(
        select(columns.id, columns.kind, columns.ref, columns.occasion, columns.audience)
        .where(columns.ref.in_({row["ref"] for row in first.values()}),
               columns.pass_id == pass_id)
    )
    owned = {(found.kind, found.ref, found.occasion, found.audience): found.id for found in mine}
    return [(row, owned[key]) for key, row in first.items() if key in owned]


_CANCELLED = tuple(NOTIFICATIONS.c[name] for name in (
    "id", "kind", "ref", "audience", "recipients", "message_id", "reseller_id",
    "recipient_results"))


def _cancel_all_overtaken(
    connection: Connection, live: list[tuple[str, str, tuple[str, str, str] | None]]
) -> list[dict[str, Any]]:
    """Cancel every waiting notice a later state overtook: one SELECT, at most one UPDATE.
    Returns the notices it cancelled (for their events)."""
    if not live:
        return []
    wanted = {(ref, family): key for ref, family, key in live}
    columns = NOTIFICATIONS.c
    waiting = connection.execute(
        select(columns.id, columns.kind, columns.ref, columns.occasion)
        .where(columns.ref.in_({ref for ref, _, _ in live}), columns.status.in_(WAITING))
    )
    doomed = []
    for row in waiting:
        family = (row.ref, FAMILY_OF.get(row.kind))
        if family in wanted and wanted[family] != (row.kind, row.ref, row.occasion):
            doomed.append(row.id)
    if not doomed:
        return []
    result = connection.execute(
        update(NOTIFICATIONS).where(columns.id.in_(doomed), columns.status.in_(WAITING))
        .values(status="cancelled").returning(*_CANCELLED)
    )
    cancelled = result.all()
    connection.execute(delete(MESSAGES).where(  # never sent now
        MESSAGES.c.notification_id.in_([row.id for row in cancelled])))
    return sorted((dict(row._mapping) for row in cancelled), key=lambda row: row["id"])
