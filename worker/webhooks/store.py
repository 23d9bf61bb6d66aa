"""The delivery tables: endpoints, the enqueueing of new events, claims, settlements,
replays and the figures `status` shows.

How a new event gets its delivery rows, none lost. The pusher enqueues events with
seq > the endpoint's `enqueued_through`, up to a *safe horizon* only: a seq below which
no transaction can still commit an event. On PostgreSQL sequence numbers are handed out
before commit, so seq 11 may be visible while seq 10 is still in an open transaction; a
cursor moved to 11 would skip 10 for ever. `safe_horizon` therefore takes a brief SHARE
lock on `events` (it waits for the transactions writing events to finish and lets none
start meanwhile), reads max(seq) and lets go: every seq up to it is committed, and any
later writer draws a larger one. If the lock cannot be had within `LOCK_WAIT` (a long
pass transaction), this round enqueues nothing new and the next one tries again: events
are late, never lost. On SQLite one writer at a time holds the database, so the largest
committed seq is already safe. This keeps the event writers free of any webhook code;
the unique key (event_seq, endpoint) and INSERT … ON CONFLICT DO NOTHING make a second
enqueue (two replicas, a replay) harmless.

Claims follow the mail's (worker.drain.drain): rows waiting and due at the pass moment,
not leased, of an enabled endpoint, get this drain's token and a lease in one statement
(FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite BEGIN IMMEDIATE serialises the
conditional UPDATE). A delivery claimed more than `hold_after` times without its answer
recorded is `held` instead (worker.db.leases).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from worker.config.endpoints import Endpoint
from worker.db.leases import extend_leases, hold, release_leases
from worker.db.schema import EVENTS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from worker.db.types import UtcDateTime
from worker.webhooks.schedule import PENDING, WAITING, Settlement

D, E, P = WEBHOOK_DELIVERIES.c, EVENTS.c, WEBHOOK_ENDPOINTS.c
LOCK_WAIT = "2s"
ENQUEUE_CHUNK = 5000


def _insert(connection: Connection) -> Any:
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)


# --- the safe horizon and endpoints ---------------------------------------------------


def safe_horizon(engine: Engine) -> int | None:
    """The largest seq below which every event is committed, or None if it cannot be
    known now (PostgreSQL: the lock was not had in time). See the module docstring."""
    with engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            return int(connection.scalar(select(func.coalesce(func.max(E.seq), 0))) or 0)
        try:
            with connection.begin():
                connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                connection.execute(text("LOCK TABLE events IN SHARE MODE"))
                return int(connection.scalar(select(func.coalesce(func.max(E.seq), 0))) or 0)
        except OperationalError:
            return None


@dataclass(frozen=True, slots=True)
class EndpointState:
    name: str
    url: str
    enqueued_through: int
    disabled_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


def sync_endpoints(connection: Connection, endpoints: Sequence[Endpoint], horizon: int,
                   now: datetime) -> dict[str, EndpointState]:
    """Rows for the configured endpoints. One seen for the first time is responsible
    from the event after `horizon` on (no flood of history). One whose URL changed takes
    the new URL, and if a 410 had disabled it, it is enabled again."""
    if endpoints:
        connection.execute(
            _insert(connection)(WEBHOOK_ENDPOINTS).on_conflict_do_nothing(index_elements=["name"]),
            [{"name": e.name, "url": e.url, "first_seq": horizon + 1,
              "enqueued_through": horizon, "created_at": now} for e in endpoints])
    states = endpoint_states(connection, [e.name for e in endpoints])
    for endpoint in endpoints:
        state = states[endpoint.name]
        if state.url != endpoint.url:
            connection.execute(update(WEBHOOK_ENDPOINTS).where(P.name == endpoint.name)
                               .values(url=endpoint.url, disabled_at=None, disabled_reason=None))
            states[endpoint.name] = EndpointState(endpoint.name, endpoint.url,
                                                  state.enqueued_through, None)
    return states


def endpoint_states(connection: Connection, names: Iterable[str]) -> dict[str, EndpointState]:
    rows = connection.execute(select(P.name, P.url, P.enqueued_through, P.disabled_at)
                              .where(P.name.in_(list(names))))
    return {row.name: EndpointState(row.name, row.url, row.enqueued_through, row.disabled_at)
            for row in rows}


def disable_endpoint(connection: Connection, name: str, at: datetime, reason: str) -> None:
    """A 410 Gone: no more attempts to `name` until its URL changes."""
    connection.execute(update(WEBHOOK_ENDPOINTS)
                       .where(P.name == name, P.disabled_at.is_(None))
                       .values(disabled_at=at, disabled_reason=reason[:2000]))


# --- enqueueing -----------------------------------------------------------------------


def enqueue(connection: Connection, endpoints: Sequence[Endpoint],
            states: Mapping[str, EndpointState], horizon: int, now: datetime) -> int:
    """Delivery rows for the events after each endpoint's `enqueued_through`, up to
    `horizon` (at most ENQUEUE_CHUNK events a call), that its type filter takes; moves the
    cursors. One INSERT … SELECT … ON CONFLICT DO NOTHING per endpoint, run in the
    database. Returns the rows added; call again until every cursor reaches `horizon`."""
    behind = [e for e in endpoints if states[e.name].enqueued_through < horizon]
    if not behind:
        return 0
    start = min(states[e.name].enqueued_through for e in behind)
    last = connection.scalar(select(E.seq).where(E.seq > start, E.seq <= horizon)
                             .order_by(E.seq).offset(ENQUEUE_CHUNK - 1).limit(1))
    through = horizon if last is None else int(last)
    added = 0
    for endpoint in behind:
        chosen = select(E.seq, literal(endpoint.name), literal(PENDING), literal(0),
                        literal(now, UtcDateTime())).where(
            E.seq > states[endpoint.name].enqueued_through, E.seq <= through,
            type_filter(endpoint.types))
        statement = _insert(connection)(WEBHOOK_DELIVERIES).from_select(
            ["event_seq", "endpoint", "status", "attempts", "created_at"], chosen,
        ).on_conflict_do_nothing(index_elements=["event_seq", "endpoint"]).returning(D.id)
        added += len(connection.execute(statement).all())  # psycopg's rowcount here is -1
    connection.execute(update(WEBHOOK_ENDPOINTS)
                       .where(P.name.in_([e.name for e in behind]),
                              P.enqueued_through < through)
                       .values(enqueued_through=through))
    return added


def type_filter(patterns: Sequence[str]) -> ColumnElement[bool]:
    """SQL for `Endpoint.wants`: `*` and `?` of the patterns as LIKE's `%` and `_`."""
    if "*" in patterns:
        return true()
    likes = []
    for pattern in patterns:
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        likes.append(E.type.like(escaped.replace("*", "%").replace("?", "_"), escape="\\"))
    return or_(*likes)


def _insert_deliveries(connection: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        connection.execute(_insert(connection)(WEBHOOK_DELIVERIES).on_conflict_do_nothing(
            index_elements=["event_seq", "endpoint"]), rows)


# --- claims ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased delivery and what pushing it needs."""

    id: int
    event_seq: int
    endpoint: str
    attempts: int


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]


def _due(names: Sequence[str], moment: datetime, now: datetime) -> Any:
    return and_(D.status.in_(WAITING), D.endpoint.in_(list(names)),
                or_(D.next_attempt_at.is_(None), D.next_attempt_at <= moment),
                or_(D.claimed_until.is_(None), D.claimed_until <= now))


def claim(connection: Connection, names: Sequence[str], moment: datetime, now: datetime,
          token: str, lease: timedelta, limit: int, hold_after: int = 3) -> list[Claimed]:
    """Lease up to `limit` due deliveries to endpoints `names` (enabled ones) to `token`."""
    if not names:
        return []
    due = _due(names, moment, now)
    pick = (select(D.id).where(due).order_by(D.event_seq, D.id).limit(limit)
            .with_for_update(skip_locked=True))
    if connection.dialect.name == "postgresql":
        # Materialised: as a plain `IN (subquery)` PostgreSQL may rescan the subquery
        # while updating, skip the rows this very statement just locked and take the
        # next ones, claiming far more than `limit`.
        picked = pick.cte("picked").prefix_with("MATERIALIZED")
        chosen: Any = D.id.in_(select(picked.c.id))
    else:
        chosen = D.id.in_(pick.scalar_subquery())
    statement = (update(WEBHOOK_DELIVERIES).where(chosen, due)
                 .values(claim_token=token, claimed_until=now + lease,
                         unsettled_claims=D.unsettled_claims + 1)
                 .returning(D.id, D.event_seq, D.endpoint, D.attempts, D.unsettled_claims))
    claimed = connection.execute(statement).all()
    hold(connection, WEBHOOK_DELIVERIES,
         [r.id for r in claimed if r.unsettled_claims > hold_after], hold_after)
    rows = [r for r in claimed if r.unsettled_claims <= hold_after]
    return sorted((Claimed(r.id, r.event_seq, r.endpoint, r.attempts) for r in rows),
                  key=lambda c: (c.event_seq, c.id))


def events_of(connection: Connection, seqs: Iterable[int]) -> dict[int, EventRow]:
    rows = connection.execute(select(E.seq, E.id, E.type, E.occurred_at, E.data)
                              .where(E.seq.in_(sorted(set(seqs)))))
    return {r.seq: EventRow(r.seq, r.id, r.type, r.occurred_at, r.data or {}) for r in rows}


def extend_lease(connection: Connection, token: str, until: datetime) -> int:
    """Keep the deliveries `token` still holds until `until`; rows whose answers are
    being written are skipped (worker.db.leases)."""
    return extend_leases(connection, WEBHOOK_DELIVERIES, token, until)


def release(connection: Connection, token: str, unrecorded: Sequence[int] = ()) -> int:
    """Give back every lease of `token` still held (a drain stopped half-way)."""
    return release_leases(connection, WEBHOOK_DELIVERIES, token, unrecorded)


def write_settlements(connection: Connection, settlements: Sequence[Settlement]) -> None:
    """Record attempts and give their leases back, in one executemany, in id order
    (the order of every other statement that locks several of these rows)."""
    if not settlements:
        return
    settlements = sorted(settlements, key=lambda settlement: settlement.id)
    statement = (update(WEBHOOK_DELIVERIES).where(D.id == bindparam("b_id"))
                 .values(status=bindparam("b_status"), attempts=bindparam("b_attempts"),
                         next_attempt_at=bindparam("b_next"), last_status=bindparam("b_code"),
                         last_error=bindparam("b_error"), delivered_at=bindparam("b_at"),
                         claim_token=None, claimed_until=None, unsettled_claims=0))
    connection.execute(statement, [
        {"b_id": s.id, "b_status": s.status, "b_attempts": s.attempts,
         "b_next": s.next_attempt_at, "b_code": s.last_status, "b_error": s.last_error,
         "b_at": s.delivered_at} for s in settlements])


# --- replays --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replayed:
    events: int
    deliveries: int
    endpoints: tuple[str, ...]
    missing: tuple[int, ...] = ()


def requeue(connection: Connection, endpoints: Sequence[Endpoint], seqs: Sequence[int],
            now: datetime) -> Replayed:
    """Queue events `seqs` again to every enabled endpoint whose filter takes them, as
    new attempts under the same webhook-id (the event's id): a delivered or dead row
    becomes `pending` with its attempts reset; a missing row is created whatever the
    endpoint's `first_seq` (replaying is how an endpoint gets history)."""
    states = endpoint_states(connection, [e.name for e in endpoints])
    enabled = [e for e in endpoints if e.name in states and states[e.name].enabled]
    found = connection.execute(select(E.seq, E.type).where(E.seq.in_(sorted(set(seqs))))).all()
    missing = tuple(sorted(set(seqs) - {row.seq for row in found}))
    pairs = [(row.seq, e.name) for row in found for e in enabled if e.wants(row.type)]
    _insert_deliveries(connection, [{"event_seq": seq, "endpoint": name, "status": PENDING,
                                     "attempts": 0, "created_at": now} for seq, name in pairs])
    if pairs:  # rows that existed before: due again, from a clean slate
        connection.execute(
            update(WEBHOOK_DELIVERIES)
            .where(D.event_seq == bindparam("b_seq"), D.endpoint == bindparam("b_endpoint"))
            .values(status=PENDING, attempts=0, next_attempt_at=None, claim_token=None,
                    claimed_until=None, last_error=None, last_status=None, delivered_at=None),
            [{"b_seq": seq, "b_endpoint": name} for seq, name in pairs])
    return Replayed(len(found), len(pairs), tuple(e.name for e in enabled), missing)


# --- figures for `status` -------------------------------------------------------------


def webhook_status(connection: Connection) -> dict[str, Any]:
    """Deliveries per state, and each endpoint with its state and what waits for it."""
    counts = dict(connection.execute(select(D.status, func.count()).group_by(D.status))
                  .tuples().all())
    waiting = dict(connection.execute(select(D.endpoint, func.count())
                                      .where(D.status.in_(WAITING)).group_by(D.endpoint))
                   .tuples().all())
    endpoints = [
        {"name": row.name, "url": row.url,
         "state": "enabled" if row.disabled_at is None else "disabled",
         "disabled_at": row.disabled_at.isoformat() if row.disabled_at else None,
         "disabled_reason": row.disabled_reason, "first_seq": row.first_seq,
         "waiting": int(waiting.get(row.name, 0))}
        for row in connection.execute(select(WEBHOOK_ENDPOINTS).order_by(P.name))]
    return {"deliveries": {str(k): int(v) for k, v in counts.items()}, "endpoints": endpoints}
