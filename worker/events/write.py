"""Writing events: in the caller's transaction, so an event exists exactly when its change does.

Once. An audit row has one event (`transition_id` is unique); a notice has at most one
event per final state (`(notification_id, type)` is unique, inserted with ON CONFLICT
DO NOTHING: a second process recording the same `sent` adds nothing). An event written
in a transaction that rolls back is rolled back with its change.

Order a poller can trust. `events --after SEQ` must never skip an event that commits
later with a lower `seq`. On PostgreSQL a sequence hands out numbers when rows are
inserted, not when they commit: transaction A may take 10, B take 11 and commit first; a
poller then reads 11, moves its cursor past 10, and never sees A's event. Every
transaction that writes events therefore takes one transaction-level advisory lock
(`pg_advisory_xact_lock`) just before its first event insert and keeps it until it ends:
numbers are handed out and made visible in the same order, so whatever a reader sees is
a prefix of the feed. The lock is taken as late as the transaction allows (the pass
inserts its events after building its messages) and held only to commit, so replicas
wait on each other only for that tail. Hence one rule for every caller: insert events
as the LAST statement of the transaction. A transaction holding the lock that then
waited for a row another event writer had locked (a notice both cancel, say) would
deadlock with it. The alternative, a feed that reads only below
the oldest seq still in flight, needs the in-flight seqs, which another transaction's
uncommitted rows do not show. SQLite needs nothing: its write transactions are already
serial (BEGIN IMMEDIATE), and `seq` is its rowid.

Crash at any step: the transaction is rolled back, change and event together; the next
pass (or drain) makes the change again and writes its event then.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select, text

from worker.db.schema import EVENTS, NOTIFICATIONS
from worker.events.build import (
    NOTIFICATION_FINAL,
    Row,
    account_state_event,
    notification_event,
    settled_at,
)

EVENTS_LOCK = 74_220_205  # any constant, other than the migration lock's
# The events insert, written once as text: SQLAlchemy compiles a dialect `insert(...)
# .on_conflict_do_nothing()` again at every execution (it is not cacheable), and that
# compilation was a quarter of the cost of recording a few outcomes. The names come from
# the schema, never from input.
_EVENT_COLUMNS = tuple(column.name for column in EVENTS.columns if column.name != "seq")
_INSERT_EVENTS = text(
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + name for name in _EVENT_COLUMNS)}) "
    "ON CONFLICT (notification_id, type) DO NOTHING"
).bindparams(*(bindparam(name, type_=EVENTS.c[name].type) for name in _EVENT_COLUMNS))
_NOTICE_COLUMNS = ("id", "kind", "ref", "audience", "recipients", "message_id", "reseller_id",
                   "recipient_results", "status", "sent_at")


def new_event_id(at: datetime) -> str:
    """The event's public identity (the `webhook-id` of every push): `evt_`, the
    milliseconds of `at` (12 hex digits) and 80 random bits (20 hex): 36 characters.

    Time first, like a ULID, so that new ids land at the end of the unique index instead
    of at random pages of it: measured here, 2,000 inserts cost 24 ms at any table size
    this way, and grew from 25 to 33 ms over the first 120,000 events with uuid4 ids."""
    return f"evt_{int(at.timestamp() * 1000):012x}{os.urandom(10).hex()}"


def lock_feed(connection: Connection) -> None:
    """Serialise event-writing transactions until this one ends (module docstring)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENTS_LOCK})


def insert_events(connection: Connection, rows: Sequence[Row], created_at: datetime) -> list[Row]:
    """Insert `rows` (from worker.events.build) in order, in the caller's transaction.

    One executemany statement. `created_at` is the real time the rows are written, from
    the caller's clock: it is informational only (order is `seq`, the moment of a change
    is `occurred_at`). A row whose (notification_id, type) is already held is skipped by
    the database. Returns the rows offered, with their `id`.
    """
    if not rows:
        return []
    stamped = [{**row, "id": new_event_id(created_at), "created_at": created_at}
               for row in rows]
    lock_feed(connection)
    connection.execute(_INSERT_EVENTS, [_full(row) for row in stamped])
    return stamped


def _full(row: Row) -> dict[str, Any]:
    """Every column of the insert, absent ones empty (`data`: an empty object)."""
    values = {name: row.get(name) for name in _EVENT_COLUMNS}
    if values["data"] is None:
        values["data"] = {}
    return values


def record_final_notices(
    connection: Connection, statuses: Mapping[int, str], now: datetime
) -> list[Row]:
    """One event per notice of `statuses` ({id: final state written}) that now holds that
    state; a notice whose update did not apply (cancelled meanwhile) gets none.

    Called in the transaction that wrote the states, `now` its real time: it dates the
    notices that carry no answer time (cancellations) and stamps the events."""
    wanted = {notice_id: status for notice_id, status in statuses.items()
              if status in NOTIFICATION_FINAL}
    if not wanted:
        return []
    columns = [NOTIFICATIONS.c[name] for name in _NOTICE_COLUMNS]
    found = connection.execute(select(*columns).where(NOTIFICATIONS.c.id.in_(wanted))
                               .order_by(NOTIFICATIONS.c.id))
    rows = [dict(row._mapping) for row in found if row.status == wanted[row.id]]
    return insert_events(connection, [notification_event(row, row["status"],
                                                         settled_at(row, row["status"], now))
                                      for row in rows], now)


def record_sent_notices(
    connection: Connection, notices: Sequence[Mapping[str, Any]], now: datetime
) -> list[Row]:
    """`notification.sent` for notices whose row the caller has just written `sent` (that
    update always applies) and whose facts it holds: no read back. Each mapping carries
    id, kind, ref, audience, recipients, message_id, reseller_id, recipient_results and
    sent_at; `now` is the real time of writing."""
    if not notices:
        return []
    return insert_events(connection, notice_events(notices, "sent", now), now)


def notice_events(notices: Sequence[Mapping[str, Any]], status: str, at: datetime) -> list[Row]:
    """Events for notices already read back (an UPDATE … RETURNING), all now `status`."""
    return [notification_event(notice, status, settled_at(notice, status, at))
            for notice in notices]


class PersonStateChange(NamedTuple):
    """An import changed the account state a person set for one customer."""

    customer_id: str
    reseller_id: str | None
    before: str
    after: str
    standing: str  # the customer's payment standing, which the import does not change


def record_account_states(
    connection: Connection, changes: Iterable[PersonStateChange], moment: datetime
) -> list[Row]:
    """For an import: one event per customer whose EFFECTIVE account state moved (none
    when the payment standing keeps it `suspended`, or nothing moved), in one statement.
    `moment` is the import's; call it in the import's transaction, after its last write
    (module docstring)."""
    events = [account_state_event(change.customer_id, change.reseller_id,
                                  (change.before, change.standing),
                                  (change.after, change.standing), moment, cause="person")
              for change in changes]
    return insert_events(connection, [event for event in events if event is not None], moment)
