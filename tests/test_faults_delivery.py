"""Delivery under the faults of production, driven from outside as an operator would:
real `renewal-worker start` processes, a PostgreSQL server of the module's own (so that
restarting it disturbs no other test), and an SMTP server in another process that notes
every Message-ID it accepts (it outlives the workers the tests kill).

Thousands of notices are queued directly, each with its own Message-ID; what the SMTP
server received is counted per Message-ID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.exc import OperationalError

from testkit.cli import command, run_cli
from testkit.http import running_receiver
from testkit.outbox import NOTIFICATIONS, queue_notice
from testkit.postgres import PostgresUnavailable, Server, server_process
from testkit.smtp import Sink, running_sink
from tests.webhooks_helpers import SECRET, add_event
from worker.db.engine import make_engine, upgrade
from worker.db.schema import MESSAGES, WEBHOOK_DELIVERIES
from worker.mail.store import build_messages

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
BOUND = 10  # the most one SIGKILL may send twice (README)
LEASE_SECONDS = 6
POLICY_TOML = f"""
[schedule]
pass_every_minutes = 60

[delivery]
lease_minutes = {LEASE_SECONDS / 60}
batch = 50
connections = 4

[send_window]
start = "00:00"
end = "00:00"
"""
_databases = count()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    try:
        with server_process() as running:
            yield running
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {error}")
        pytest.skip(f"PostgreSQL tests skipped locally: {error}")


@pytest.fixture
def database(server: Server) -> Iterator[Engine]:
    name = f"faults_{next(_databases)}"
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    engine = make_engine(server.url.rsplit("/", 1)[0] + "/" + name)
    upgrade(engine)
    yield engine
    engine.dispose()


def queue_many(engine: Engine, number: int) -> set[str]:
    """`number` queued notices with their messages built, each with its own Message-ID
    (one message built, its Message-ID rewritten): the Message-IDs."""
    first = queue_notice(engine, ref="n0")
    with engine.begin() as connection:
        built, _ = build_messages(connection, [first])
        template = dict(connection.execute(
            select(NOTIFICATIONS).where(NOTIFICATIONS.c.id == first)).one()._mapping)
    data, message_id = built[first]
    rows, ids = [], {message_id}
    for number_ in range(1, number):
        own = message_id.replace("@", f".{number_}@", 1)
        rows.append({**{k: v for k, v in template.items() if k != "id"},
                     "ref": f"n{number_}", "occasion": f"n{number_}:2027-03-10",
                     "message_id": own})
        ids.add(own)
    with engine.begin() as connection:
        inserted = connection.execute(insert(NOTIFICATIONS).returning(NOTIFICATIONS.c.id,
                                                                      NOTIFICATIONS.c.message_id),
                                      rows)
        connection.execute(insert(MESSAGES), [
            {"notification_id": new.id,
             "message_bytes": data.replace(message_id.encode(), new.message_id.encode())}
            for new in inserted])
    return ids


def unsent(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(NOTIFICATIONS).where(
            NOTIFICATIONS.c.status != "sent")) or 0)


def claimed(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(NOTIFICATIONS).where(
            NOTIFICATIONS.c.claim_token.is_not(None))) or 0)


class Replica:
    """One `renewal-worker start` process; its log goes to a file."""

    def __init__(self, engine: Engine, sink: Sink, folder: Path, name: str) -> None:
        config = folder / "policy.toml"
        config.write_text(POLICY_TOML, encoding="utf-8")
        self.log = folder / f"{name}.log"
        env = {key: value for key, value in os.environ.items() if key != "HEALTH_PORT"}
        env.update(DATABASE_URL=engine.url.render_as_string(hide_password=False),
                   SMTP_URL=sink.url, WORKER_CONFIG=str(config),
                   WORKER_MAIL_DIR=str(folder / "mail"))
        with self.log.open("w") as log:
            self.process = subprocess.Popen([*command(), "start"], cwd=folder, env=env,
                                            stdout=subprocess.DEVNULL, stderr=log)

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if f'"{name}"' in line:
                found.append(json.loads(line))
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `condition` (a database that does not answer yet counts as not yet)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OperationalError):
            if condition():
                return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def test_three_replicas_deliver_thousands_of_notices_exactly_once(
    database: Engine, tmp_path: Path, replicas: list[Replica]
) -> None:
    """3,000 notices, three replicas draining at once: every Message-ID once."""
    ids = queue_many(database, 3000)
    with running_sink() as sink:
        replicas += [Replica(database, sink, tmp_path, f"r{i}") for i in range(3)]
        wait_until(lambda: unsent(database) == 0, 180, "every notice sent")
        received = sink.received()
    assert ids == set(received)
    assert {1} == set(received.values())
    assert 0 == claimed(database)
    busy = [r for r in replicas if any(e.get("sent") for e in r.events("delivery_finished"))]
    assert len(busy) >= 2  # they shared the work


def test_a_replica_killed_mid_delivery_costs_at_most_a_few_duplicates(
    database: Engine, tmp_path: Path, replicas: list[Replica]
) -> None:
    """SIGKILL one of two replicas while it sends; its notices wait for their lease, then
    a restarted replica delivers them: nothing lost, duplicates only of messages the
    server had accepted (the same Message-ID), and no more than BOUND."""
    ids = queue_many(database, 1500)
    with running_sink(delay=0.004) as sink:
        replicas += [Replica(database, sink, tmp_path, f"r{i}") for i in range(2)]
        wait_until(lambda: sum(sink.received().values()) >= 300, 120, "delivery under way")
        replicas[0].kill()
        time.sleep(LEASE_SECONDS + 1)
        replicas.append(Replica(database, sink, tmp_path, "restarted"))
        wait_until(lambda: unsent(database) == 0, 180, "every notice sent")
        received = sink.received()
    assert ids == set(received)
    assert sum(received.values()) - len(ids) <= BOUND
    assert 0 == claimed(database)


def test_a_postgresql_restart_mid_delivery_loses_nothing_and_sends_nothing_twice(
    server: Server, database: Engine, tmp_path: Path, replicas: list[Replica]
) -> None:
    """`pg_ctl restart -m fast` under a running `start`: the drain keeps the outcomes it
    could not write, sends nothing new while the database is away, writes them when it
    is back, and goes on: 0 lost, 0 duplicates, the outage logged once."""
    ids = queue_many(database, 1500)
    with running_sink(delay=0.004) as sink:
        replicas.append(Replica(database, sink, tmp_path, "r0"))
        wait_until(lambda: sum(sink.received().values()) >= 300, 120, "delivery under way")
        server.restart()
        wait_until(lambda: unsent(database) == 0, 180, "every notice sent")
        received = sink.received()
    assert ids == set(received)
    assert {1} == set(received.values())
    assert 0 == claimed(database)
    assert 1 == len(replicas[0].events("database_unavailable"))
    assert re.search(r'"database_available"', replicas[0].log.read_text(encoding="utf-8"))


def test_a_postgresql_restart_mid_push_loses_no_event_and_pushes_none_twice(
    server: Server, database: Engine, tmp_path: Path
) -> None:
    """`pg_ctl restart -m fast` while `run --once` pushes 2,000 events to a receiver:
    nothing new is pushed while the database is away, the answers in hand are written
    when it is back, and the run finishes: every event once, nothing left claimed, the
    outage logged once."""
    url = database.url.render_as_string(hide_password=False)
    with running_receiver() as receiver:
        receiver.answer = lambda _request: (204, 0.003)
        hooks = {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}
        assert 0 == run_cli("run", "--once", database_url=url, cwd=tmp_path, **hooks).code
        with database.begin() as connection:
            ids = {add_event(connection)[1] for _ in range(2000)}
        env = {key: value for key, value in os.environ.items()
               if key not in ("SMTP_URL", "WORKER_CONFIG", "HEALTH_PORT")}
        env.update(DATABASE_URL=url, WORKER_MAIL_DIR=str(tmp_path / "mail"), **hooks)
        log = tmp_path / "run.log"
        with log.open("w") as stderr:
            run = subprocess.Popen([*command(), "run", "--once"], cwd=tmp_path, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_until(lambda: len(receiver.ids()) >= 200, 60, "push under way")
            server.restart()
            status = run.wait(timeout=90)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=10)
        pushed = receiver.ids()
    told = log.read_text(encoding="utf-8")
    assert 0 == status, told
    assert ids == set(pushed)
    assert len(pushed) == len(ids)
    assert 1 == told.count('"database_unavailable"'), told
    with database.connect() as connection:
        rows = connection.execute(select(WEBHOOK_DELIVERIES.c.status,
                                         WEBHOOK_DELIVERIES.c.claim_token)).all()
    assert {("delivered", None)} == set(rows)
    assert len(rows) == len(ids)
