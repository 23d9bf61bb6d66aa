"""The drain under faults, in one process: one drain at a time, outcomes kept through a
database outage, a stop request honoured, group commit, crash points parsed.

The database goes away here through a connection event that raises the driver's
"connection lost" (an `OperationalError`) while a flag is set; the real PostgreSQL
restart and real SIGKILLs are in test_faults_delivery.py and test_crash_matrix.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError

from testkit.cli import run_cli
from testkit.outbox import NOTIFICATIONS, queue_notice
from testkit.smtp import smtp_server
from worker.config.policy import build_policy
from worker.config.settings import Settings
from worker.db.failures import database_backoff
from worker.drain.schedule import RetrySchedule
from worker.errors import ConfigError
from worker.mail.drain import deliver_due
from worker.mail.transports.base import Outcome, Outgoing
from worker.mail.transports.memory import MemoryMailer
from worker.support import crashpoints

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Paris: inside the window
POLICY = build_policy({})


def clock() -> datetime:
    return T


class SlowMailer(MemoryMailer):
    """The twin, taking `delay` seconds per message and counting the sends in flight
    across every mailer sharing `flight`; `started(n)` runs as the n-th send starts,
    `hook(n)` before it ends."""

    def __init__(self, flight: dict[str, int], *, delay: float = 0.005, concurrency: int = 2,
                 hook: Any = None, started: Any = None) -> None:
        super().__init__(concurrency=concurrency)
        self.flight, self.delay, self.hook, self.started = flight, delay, hook, started
        self.lock = threading.Lock()

    async def send(self, message: Outgoing) -> Outcome:
        with self.lock:
            self.flight["now"] += 1
            self.flight["most"] = max(self.flight["most"], self.flight["now"])
            self.flight["sends"] += 1
            number = self.flight["sends"]
        if self.started is not None:
            self.started(number)
        try:
            await asyncio.sleep(self.delay)
            if self.hook is not None:
                self.hook(number)
            return await super().send(message)
        finally:
            with self.lock:
                self.flight["now"] -= 1


def sent_ids(*mailers: MemoryMailer) -> Counter[str]:
    return Counter(str(message_from_bytes(d.data)["Message-ID"])
                   for m in mailers for d in m.delivered)


def states(engine: Engine) -> Counter[tuple[str, bool]]:
    query = select(NOTIFICATIONS.c.status, NOTIFICATIONS.c.claim_token)
    with engine.connect() as connection:
        return Counter((row.status, row.claim_token is not None)
                       for row in connection.execute(query))


def flight() -> dict[str, int]:
    return {"now": 0, "most": 0, "sends": 0}


def test_the_pass_drain_and_the_periodic_drain_of_one_process_take_turns(
    engine: Engine,
) -> None:
    """Two drains started at once in one process never send at the same time, so the
    connection cap holds per process; together they still send everything once."""
    for i in range(40):
        queue_notice(engine, ref=f"s{i}")
    shared = flight()
    mailers = [SlowMailer(shared), SlowMailer(shared)]
    small = RetrySchedule(batch=5)
    threads = [threading.Thread(target=deliver_due, args=(engine, POLICY, Settings(), T),
                                kwargs={"clock": clock, "mailer": m, "retry": small})
               for m in mailers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert 2 == shared["most"]  # one mailer's two connections, never four
    counts = sent_ids(*mailers)
    assert 40 == len(counts)
    assert {1} == set(counts.values())
    assert {("sent", False): 40} == states(engine)


class Outage:
    """Makes every statement on `engine` fail as a lost connection while `down`."""

    def __init__(self, engine: Engine) -> None:
        self.down = threading.Event()
        self.failures = 0
        self.first_failure = 0.0
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *_args: Any) -> None:
        if self.down.is_set():
            self.failures += 1
            self.first_failure = self.first_failure or time.monotonic()
            raise OperationalError("(statement)", None,
                                   ConnectionError("server closed the connection"))

    def for_seconds(self, seconds: float) -> None:
        self.down.set()
        threading.Timer(seconds, self.down.clear).start()


def test_outcomes_survive_a_database_outage_and_nothing_is_sent_twice(engine: Engine) -> None:
    """The database goes away mid-batch: sends in hand finish, nothing new starts while
    it is away, the outcomes are kept and written when it answers, the outage is logged
    once; every notice goes out exactly once."""
    ids = [queue_notice(engine, ref=f"s{i}") for i in range(30)]
    outage = Outage(engine)
    started_while_known_down: list[int] = []

    def hook(number: int) -> None:
        if number == 7:
            outage.for_seconds(0.6)

    def started(number: int) -> None:
        # the drain learns of the outage when a write fails: from then on, no new send
        known = outage.failures and time.monotonic() - outage.first_failure > 0.05
        if outage.down.is_set() and known:
            started_while_known_down.append(number)

    mailer = SlowMailer(flight(), hook=hook, started=started)
    with structlog.testing.capture_logs() as logs:
        counts = deliver_due(engine, POLICY, Settings(), T, clock=clock, mailer=mailer,
                             retry=RetrySchedule(batch=10))
    assert outage.failures >= 1
    assert [] == started_while_known_down
    assert len(ids) == counts.sent
    assert {1} == set(sent_ids(mailer).values())
    assert len(ids) == len(sent_ids(mailer))
    assert {("sent", False): len(ids)} == states(engine)
    events = Counter(entry["event"] for entry in logs)
    assert 1 == events["database_unavailable"]
    assert 1 == events["database_available"]


def test_a_stop_request_finishes_the_sends_in_hand_and_gives_back_the_rest(
    engine: Engine,
) -> None:
    """Stop: nothing new is claimed or sent, every outcome is written, and the rows
    claimed but not sent are released at once (no lease left to wait for)."""
    for i in range(30):
        queue_notice(engine, ref=f"s{i}")
    stop = threading.Event()

    def hook(number: int) -> None:
        if number == 4:
            stop.set()

    mailer = SlowMailer(flight(), hook=hook)
    counts = deliver_due(engine, POLICY, Settings(), T, clock=clock, mailer=mailer,
                         retry=RetrySchedule(batch=10), stop=stop)
    assert 4 <= counts.sent <= 5  # the fourth, and the one in hand beside it
    assert {("sent", False): counts.sent, ("queued", False): 30 - counts.sent} == states(engine)


def test_group_commit_writes_many_outcomes_per_transaction_when_sending_is_fast(
    engine: Engine,
) -> None:
    """With the database slower than the sends, commits carry several outcomes each:
    fewer commits than messages, and everything recorded."""
    for i in range(60):
        queue_notice(engine, ref=f"s{i}")

    @event.listens_for(engine, "commit")
    def slow_commit(_connection: Any) -> None:
        time.sleep(0.01)

    mailer = SlowMailer(flight(), delay=0.001, concurrency=4)
    counts = deliver_due(engine, POLICY, Settings(), T, clock=clock, mailer=mailer,
                         retry=RetrySchedule(batch=30))
    assert 60 == counts.sent
    assert counts.commits < 40
    assert {("sent", False): 60} == states(engine)


class Refusal(Exception):
    """A statement the database refuses (a bug): never retried."""


def test_a_writer_stopped_by_a_refused_statement_ends_the_drain_instead_of_hanging(
    engine: Engine,
) -> None:
    """The second commit of outcomes fails for good: the senders stop at once (they used
    to wait for room that no commit would ever make), and the drain ends with the error,
    having sent no more than the bound beyond what it recorded."""
    for i in range(40):
        queue_notice(engine, ref=f"s{i}")
    commits = {"seen": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("UPDATE notifications SET status"):
            commits["seen"] += 1
            if commits["seen"] >= 2:
                raise Refusal("refused")

    mailer = SlowMailer(flight(), delay=0.002, concurrency=4)
    result: dict[str, BaseException | int] = {}

    def drain() -> None:
        try:
            result["sent"] = deliver_due(engine, POLICY, Settings(), T, clock=clock,
                                         mailer=mailer, retry=RetrySchedule(batch=40)).sent
        except BaseException as error:
            result["error"] = error

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the drain hung after its writer stopped"
    assert isinstance(result.get("error"), Refusal)
    recorded = states(engine)[("sent", False)]
    assert len(mailer.delivered) - recorded <= 2 * 4 - 1 + 4 - 1  # the README's bound


def test_a_lease_extension_refused_is_logged_and_the_drain_goes_on(engine: Engine) -> None:
    """The heartbeat's extension is refused (not an outage): it says so each time and
    keeps trying; the sends are not disturbed. Before, the heartbeat died unseen and the
    lease ran out under a drain still sending."""
    for i in range(12):
        queue_notice(engine, ref=f"s{i}")

    @event.listens_for(engine, "before_cursor_execute")
    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "UPDATE notifications SET claimed_until" in statement:
            raise Refusal("refused")

    mailer = SlowMailer(flight(), delay=0.05, concurrency=1)
    with structlog.testing.capture_logs() as logs:
        counts = deliver_due(engine, POLICY, Settings(), T, clock=clock, mailer=mailer,
                             retry=RetrySchedule(batch=12, lease=timedelta(seconds=0.3)))
    assert 12 == counts.sent
    assert {("sent", False): 12} == states(engine)
    assert sum(entry["event"] == "lease_not_extended" for entry in logs) >= 2


@pytest.mark.parametrize(("failures", "expected"), [
    (0, 0.0), (1, 0.1), (2, 0.2), (5, 1.6), (8, 10.0), (1000, 10.0)])
def test_the_database_is_tried_again_with_a_doubling_delay_up_to_a_cap(
    failures: int, expected: float
) -> None:
    """A restart of seconds is noticed quickly; an outage of hours costs little."""
    assert expected == pytest.approx(database_backoff(failures))


@pytest.mark.parametrize(("spec", "expected"), [
    ("after_accept", ("after_accept", 1)), ("in_claim:3", ("in_claim", 3))])
def test_a_crash_point_names_a_known_point_and_a_visit(spec: str, expected: object) -> None:
    assert expected == crashpoints.parse(spec)


@pytest.mark.parametrize("spec", ["nowhere", "after_accept:0", "after_accept:x"])
def test_a_wrong_crash_point_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"point|count"):
        crashpoints.parse(spec)


def test_the_connection_cap_of_the_policy_holds_for_a_drain(engine: Engine) -> None:
    """[delivery] connections = 2: twenty notices over two connections at most."""
    for i in range(20):
        queue_notice(engine, ref=f"s{i}")
    policy = build_policy({"delivery": {"connections": 2}})
    with smtp_server() as server:
        counts = deliver_due(engine, policy, Settings(smtp_url=server.url()), T, clock=clock)
        assert 20 == counts.sent
        assert server.connections <= 2


@pytest.mark.parametrize("value", [0, 101, 2.5])
def test_a_connection_cap_out_of_range_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"delivery\.connections"):
        build_policy({"delivery": {"connections": value}})


def test_a_wrong_crash_point_in_the_environment_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    """WORKER_CRASH_AT is read at the edge like any setting: exit 2, naming it."""
    result = run_cli("status", database_url=f"sqlite:///{tmp_path / 'w.db'}", cwd=tmp_path,
                     WORKER_CRASH_AT="nowhere")
    assert 2 == result.code
    assert "WORKER_CRASH_AT: unknown point 'nowhere'" in result.stderr
