"""Transactions PostgreSQL rolls back to break a deadlock: made to happen for real, with
a second connection locking rows in the other order, and tried again by the drain
(worker.db.failures). Also the lease extension, which must not wait for rows the
drain's own writer holds (the deadlock three replicas met)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import structlog
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from testkit.outbox import NOTIFICATIONS, queue_notice
from worker.db.failures import conflict_delay, is_conflict, is_outage
from worker.db.runner import Database
from worker.db.schema import EVENTS
from worker.drain.schedule import RetrySchedule
from worker.mail.decisions import settle
from worker.mail.store import claim, extend_lease, write_settlements
from worker.mail.transports.base import Outcome, Verdict

pytestmark = pytest.mark.postgres
T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


def claimed_pair(engine: Engine) -> list[Any]:
    queue_notice(engine, ref="a")
    queue_notice(engine, ref="b")
    with engine.begin() as connection:
        return claim(connection, T, T, "token", LEASE, 10)


def sent(notice: Any) -> Any:
    outcome = Outcome.for_all(notice.recipients, Verdict.ACCEPTED, 250, "2.0.0 Queued")
    settlement = settle(notice, outcome, T, T, RetrySchedule())
    facts = {"kind": notice.kind, "ref": notice.ref, "audience": notice.audience,
             "recipients": list(notice.recipients), "message_id": f"<{notice.id}@x>",
             "reseller_id": notice.reseller_id}
    return replace(settlement, facts=facts)


def waiting_for_a_lock(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")) or 0)


def test_a_deadlock_while_recording_outcomes_is_tried_again_and_recorded(
    postgres_engine: Engine,
) -> None:
    """The writer updates notice a, then waits for b, which another transaction holds;
    that one then asks for a. PostgreSQL breaks the cycle by rolling back the writer (its
    deadlock check comes first); the writer tries again and records both, with one
    event each, and no outage is logged."""
    engine = postgres_engine
    first, second = claimed_pair(engine)
    settlements = [sent(first), sent(second)]
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(text("SET LOCAL deadlock_timeout = '60s'"))  # the writer is the victim
    blocker.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == second.id)
                    .values(attempts=NOTIFICATIONS.c.attempts))
    database = Database(engine)
    outcome: dict[str, Any] = {}

    def record() -> None:
        try:
            asyncio.run(database.run(lambda c: write_settlements(c, settlements, T),
                                     lane="writer"))
            outcome["done"] = True
        except Exception as error:
            outcome["error"] = error
        finally:
            database.close()

    with structlog.testing.capture_logs() as logs:
        writer = threading.Thread(target=record)
        writer.start()
        deadline = time.monotonic() + 10
        while waiting_for_a_lock(engine) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waiting_for_a_lock(engine) == 1  # the writer holds a and waits for b
        blocker.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == first.id)
                        .values(attempts=NOTIFICATIONS.c.attempts))  # the cycle
        blocker.commit()
        blocker.close()
        writer.join(timeout=30)
    assert outcome == {"done": True}
    events = Counter(entry["event"] for entry in logs)
    assert events["transaction_retried"] >= 1
    assert events["database_unavailable"] == 0
    with engine.connect() as connection:
        rows = connection.execute(select(NOTIFICATIONS.c.status, NOTIFICATIONS.c.claim_token)
                                  ).all()
        told = connection.scalar(select(func.count()).select_from(EVENTS).where(
            EVENTS.c.type == "notification.sent"))
    assert sorted(rows) == [("sent", None), ("sent", None)]
    assert told == 2


def test_the_lease_extension_skips_rows_being_recorded_instead_of_waiting(
    postgres_engine: Engine,
) -> None:
    """A notice whose outcome is being written (its row locked) is not waited for by the
    heartbeat: the others are extended at once."""
    engine = postgres_engine
    first, second = claimed_pair(engine)
    with engine.connect() as recording:
        recording.begin()
        recording.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == first.id)
                          .values(attempts=1))
        with engine.begin() as heartbeat:
            heartbeat.execute(text("SET LOCAL lock_timeout = '2s'"))
            extended = extend_lease(heartbeat, "token", T + 2 * LEASE)
        recording.rollback()
    assert extended == 1
    with engine.connect() as connection:
        until = {row.id: row.claimed_until for row in connection.execute(
            select(NOTIFICATIONS.c.id, NOTIFICATIONS.c.claimed_until))}
    assert until[second.id] == T + 2 * LEASE
    assert until[first.id] == T + LEASE


def test_conflicts_outages_and_refusals_are_told_apart() -> None:
    """A deadlock or a serialisation failure is a conflict (tried again at once), a lost
    connection an outage, a constraint a refusal (a bug: neither)."""
    deadlock = OperationalError("UPDATE", None, psycopg.errors.DeadlockDetected("deadlock"))
    serial = OperationalError("UPDATE", None,
                              psycopg.errors.SerializationFailure("could not serialize"))
    lost = OperationalError("UPDATE", None, psycopg.OperationalError("server closed"))
    refused = IntegrityError("INSERT", None, psycopg.errors.UniqueViolation("duplicate"))
    assert [is_conflict(e) for e in (deadlock, serial, lost, refused)] == [
        True, True, False, False]
    assert [is_outage(e) for e in (deadlock, serial, lost, refused)] == [
        False, False, True, False]
    assert is_conflict(psycopg.errors.DeadlockDetected("raw, as a pipeline raises it"))


@pytest.mark.parametrize("conflicts", [1, 2, 5, 50])
def test_a_conflict_is_tried_again_after_a_short_growing_jittered_delay(conflicts: int) -> None:
    ceiling = min(1.0, 0.02 * 2 ** (conflicts - 1))
    delays = [conflict_delay(conflicts) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1
