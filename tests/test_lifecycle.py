"""A pass's lifecycle on both databases: who runs it, a stop between chunks, a failure
closed with its error, dead passes marked abandoned; a drain that stops gives back what
it has not sent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import OperationalError

from testkit.outbox import NOTIFICATIONS, queue_notice
from testkit.portfolios import FIRST_PASS_AT, build_first_pass
from worker.config.policy import Policy, build_policy
from worker.config.settings import Settings
from worker.db.schema import PASSES
from worker.mail.transports.memory import MemoryMailer
from worker.passes.ledger import HOST, Heartbeat, Runner, RunningPass, abandon_reason, open_pass
from worker.passes.run import CHUNK, PassFailed, run_pass
from worker.reports.status import dashboard
from worker.service.health import verdict
from worker.service.metrics import exposition

REAL = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def pass_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(PASSES).order_by(PASSES.c.id)))


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_pass_records_who_runs_it_and_a_heartbeat(
    database_url: str, engine: Engine, policy: Policy
) -> None:
    """An operator can tell which process runs (or ran) a pass, and that it was alive."""
    build_first_pass(database_url, 300)
    run_pass(engine, policy, FIRST_PASS_AT, clock=lambda: REAL)
    row = pass_rows(engine)[0]
    assert (HOST, os.getpid(), REAL, "done", None) == (
        row.host, row.pid, row.heartbeat_at, row.outcome, row.error)


def test_a_stop_request_ends_the_pass_after_the_chunk_in_hand(
    database_url: str, engine: Engine, policy: Policy
) -> None:
    """Stopping never cuts a chunk: the pass closes `interrupted`, the next one resumes."""
    build_first_pass(database_url, 3 * CHUNK)
    looks = iter([False, True])
    first = run_pass(engine, policy, FIRST_PASS_AT, clock=lambda: REAL,
                     stop=lambda: next(looks, True))
    second = run_pass(engine, policy, FIRST_PASS_AT, clock=lambda: REAL)
    rows = pass_rows(engine)
    assert ("interrupted", CHUNK) == (first.outcome, first.evaluated["subscription"])
    assert ("interrupted", REAL) == (rows[0].outcome, rows[0].finished_at)
    assert ("done", 2 * CHUNK) == (second.outcome, second.evaluated["subscription"])
    assert 3 * CHUNK // 3 == second.evaluated["customer"]


def test_a_failed_pass_is_closed_failed_with_its_error(engine: Engine, policy: Policy) -> None:
    """A pass never stays `running` because it broke: the row says `failed` and why."""

    def deliver(_moment: datetime) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    with pytest.raises(PassFailed) as raised:
        run_pass(engine, policy, FIRST_PASS_AT, clock=lambda: REAL, deliver=deliver)
    row = pass_rows(engine)[0]
    assert raised.value.closed
    assert ("failed", REAL) == (row.outcome, row.finished_at)
    assert row.error.startswith("OperationalError: (builtins.Exception) server closed")


def test_dead_passes_are_marked_abandoned_by_the_next_pass(
    engine: Engine, policy: Policy
) -> None:
    """A process killed mid-pass leaves its row `running`; the next pass says `abandoned`:
    at once when its process is gone from this host, else once its heartbeat is stale."""
    age = timedelta(minutes=policy.schedule.abandon_after_minutes)
    rows = [("gone-here", HOST, dead_pid(), REAL - timedelta(seconds=5)),
            ("stale-elsewhere", "other-host", 7, REAL - age - timedelta(seconds=1)),
            ("alive-elsewhere", "other-host", 8, REAL - age + timedelta(minutes=1))]
    with engine.begin() as connection:
        for trigger, host, pid, beat in rows:
            connection.execute(insert(PASSES).values(
                started_at=beat, as_of=FIRST_PASS_AT, dry_run=False, trigger=trigger,
                outcome="running", counts={}, errors=[], host=host, pid=pid,
                heartbeat_at=beat))
    run_pass(engine, policy, FIRST_PASS_AT, clock=lambda: REAL)
    found = {row.trigger: (row.outcome, row.error) for row in pass_rows(engine)}
    with engine.connect() as connection:
        board = dashboard(connection)
    health = verdict(engine, REAL, timedelta(minutes=45)).body()
    metrics = exposition(engine, lambda: REAL).decode()
    assert "abandoned" == found["gone-here"][0]
    assert "is gone" in found["gone-here"][1]
    assert "abandoned" == found["stale-elsewhere"][0]
    assert "no heartbeat since" in found["stale-elsewhere"][1]
    assert ("running", None) == found["alive-elsewhere"]
    assert {"abandoned": 2, "running": 1, "done": 1} == board["passes"]
    assert ("ok", "abandoned") == (health["status"], health["last_abandoned"]["outcome"])
    assert ["alive-elsewhere"] == [
        row.trigger for row in pass_rows(engine) if row.id in
        {running["id"] for running in health["running"]}]
    assert 'worker_pass_rows{outcome="abandoned"} 2.0' in metrics


ME = Runner("here", 100)
NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("host", "pid", "beat_minutes_ago", "alive", "dead"), [
    ("here", 200, 1, False, True),  # gone from this host: at once
    ("here", 200, 1, True, False),
    ("here", 100, 1, False, False),  # this process: another thread may run it
    ("here", 100, 11, True, True),  # ... but not without a heartbeat
    ("there", 200, 9, False, False),  # another host: only the heartbeat tells
    ("there", 200, 11, True, True),
    (None, None, 11, True, True),  # a row from before hosts were recorded
])
def test_abandon_reason_trusts_the_pid_on_this_host_and_the_heartbeat_elsewhere(
    host: str | None, pid: int | None, beat_minutes_ago: int, alive: bool, dead: bool
) -> None:
    row = RunningPass(1, host, pid, NOW - timedelta(hours=1),
                      NOW - timedelta(minutes=beat_minutes_ago))
    reason = abandon_reason(row, NOW, ME, timedelta(minutes=10), lambda _pid: alive)
    assert dead == (reason is not None)


def test_the_heartbeat_thread_renews_a_running_pass(engine: Engine) -> None:
    """While a pass runs its heartbeat moves on, so other replicas leave it alone."""
    with engine.begin() as connection:
        pass_id = open_pass(connection, FIRST_PASS_AT, REAL, dry_run=False, trigger="once",
                            runner=Runner.this_process())
    ticks = iter(REAL + timedelta(seconds=n) for n in range(1, 10_000))
    with Heartbeat(engine, pass_id, lambda: next(ticks), timedelta(milliseconds=20)):
        deadline = time.monotonic() + 10
        while pass_rows(engine)[0].heartbeat_at == REAL and time.monotonic() < deadline:
            time.sleep(0.02)
    assert REAL < pass_rows(engine)[0].heartbeat_at


def test_a_stopped_drain_records_what_it_sent_and_gives_back_the_rest(engine: Engine) -> None:
    """On a stop the drain claims nothing new, writes the outcomes in hand and releases
    the claims it did not use, so another process sends them at once."""
    ids = [queue_notice(engine, ref=f"s{n}", timezone="UTC") for n in range(5)]
    mailer = MemoryMailer()
    moment = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
    from worker.mail.drain import deliver_due

    counts = deliver_due(engine, build_policy({}), Settings(), moment, clock=lambda: moment,
                         mailer=mailer, stop=lambda: mailer.attempts >= 2)
    with engine.connect() as connection:
        rows = connection.execute(select(NOTIFICATIONS.c.status, NOTIFICATIONS.c.claim_token)
                                  .where(NOTIFICATIONS.c.id.in_(ids))
                                  .order_by(NOTIFICATIONS.c.id)).all()
    assert 2 == counts.sent == len(mailer.delivered)
    assert [("sent", None)] * 2 + [("queued", None)] * 3 == [tuple(row) for row in rows]


def test_an_outage_is_logged_once_and_retries_back_off() -> None:
    """Many failures while the database is away make one warning, and growing delays."""
    from structlog.testing import capture_logs

    from worker.service.scheduler import DatabaseWatch, database_error

    watch = DatabaseWatch()
    error = OperationalError("SELECT 1", {}, Exception("connection refused"))
    delays = []
    with capture_logs() as logs:
        for _ in range(8):
            watch.failed(error)
            delays.append(watch.next_delay().total_seconds())
        watch.answered()
        watch.answered()
    events = [entry["event"] for entry in logs if entry["log_level"] != "debug"]
    assert ["database_unavailable", "database_available"] == events
    assert [1, 2, 4, 8, 15, 30, 30, 30] == delays
    assert error is database_error(_caused_by(error))
    assert database_error(ValueError("a bug")) is None


def _caused_by(error: BaseException) -> BaseException:
    try:
        raise PassFailed(1, "x", closed=False) from error
    except PassFailed as wrapped:
        return wrapped
