"""Carries out what rules decided: record updates, the audit trail, notices, cancellations.

Everything a pass decides about one chunk of records is gathered in a `Batch` and written
in the chunk's transaction. "Once" is the database's job: a notice is inserted with
ON CONFLICT DO NOTHING on its (kind, ref, occasion, audience) key, so no re-run and no
second process can queue it twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, not_, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.db.schema import NOTIFICATIONS, TRANSITIONS
from worker.db.snapshots import CustomerInfo, ResellerInfo
from worker.model import Change, Notice
from worker.notices import AUDIENCES, CUSTOMER, FAMILIES, RESELLER

WAITING = ("queued", "retrying")


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
    """DOMAIN.md "Who receives what": customer admins; the account manager or reseller."""
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
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    live: list[tuple[str, str, tuple[str, str, str] | None]] = field(default_factory=list)

    def update(self, table: str, row_id: str, **values: Any) -> None:
        """Queue an update; rows of one table that set the same columns go out together."""
        group = f"{table}:{','.join(sorted(values))}"
        self.updates.setdefault(group, []).append({"b_id": row_id, **values})

    def record(self, record_type: str, record_id: str, changes: tuple[Change, ...]) -> None:
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

    queued: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    transitions: int = 0
    queued_rows: list[dict[str, Any]] = field(default_factory=list)
    queued_ids: list[int] = field(default_factory=list)


def write(connection: Connection, batch: Batch, tables: dict[str, Table]) -> Written:
    written = Written()
    for group, rows in batch.updates.items():
        table = tables[group.split(":", 1)[0]]
        columns: dict[str, Any] = {key: bindparam(key) for key in rows[0] if key != "b_id"}
        statement = update(table).where(table.c.id == bindparam("b_id")).values(columns)
        connection.execute(statement, rows)
    if batch.transitions:
        connection.execute(TRANSITIONS.insert(), batch.transitions)
        written.transitions = len(batch.transitions)
    for live in batch.live:
        written.cancelled += _cancel_overtaken(connection, *live)
    for row in batch.notifications:
        new_id = _insert_once(connection, row)
        if new_id is not None:
            written.queued[row["kind"]] += 1
            written.queued_rows.append(row)
            written.queued_ids.append(new_id)
    return written


def _insert_once(connection: Connection, row: dict[str, Any]) -> int | None:
    dialect = connection.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(NOTIFICATIONS).values(row)
        .on_conflict_do_nothing(index_elements=["kind", "ref", "occasion", "audience"])
        .returning(NOTIFICATIONS.c.id)
    )
    return connection.execute(statement).scalar()


def _cancel_overtaken(
    connection: Connection, ref: str, family: str, key: tuple[str, str, str] | None
) -> int:
    columns = NOTIFICATIONS.c
    condition = and_(columns.ref == ref, columns.kind.in_(FAMILIES[family]),
                     columns.status.in_(WAITING))
    if key is not None:
        kind, _, occasion = key
        condition = and_(condition, not_(and_(columns.kind == kind, columns.occasion == occasion)))
    result = connection.execute(update(NOTIFICATIONS).where(condition).values(status="cancelled"))
    return int(result.rowcount or 0)

