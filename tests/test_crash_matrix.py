"""The crash matrix: a run killed (SIGKILL) at each named point, then a normal run.

Each point of `worker.support.crashpoints` is reached deterministically (the n-th visit, n
varied across repetitions) in a forked child running a pass and its drain against an
SMTP server in another process; the child kills itself there. A normal pass follows,
its clock past the lease. Then every notice has been delivered, nothing is left claimed,
and a notice arrived twice only for the one point where that cannot be helped (after
the server's 250, before the record), always with the same Message-ID, and within the
bound. Twenty repetitions per point: most on SQLite, some on PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text

from testkit.outbox import NOTIFICATIONS
from testkit.smtp import Sink, running_sink
from tests.portfolio import as_json, portfolio
from worker.config.policy import build_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.importing.load import import_data
from worker.mail.drain import DeliveryCounts, deliver_due
from worker.passes.run import run_pass
from worker.support import crashpoints

T = datetime(2027, 1, 29, 10, 0, tzinfo=UTC)  # 12 subscriptions cross AD - 45 on this day
POLICY = build_policy({"delivery": {"batch": 4, "connections": 2},
                       "send_window": {"start": "00:00", "end": "00:00"}})
LEASE = timedelta(minutes=POLICY.delivery.lease_minutes)
BOUND = 10  # the most a kill may send twice (README)
REPS = {"sqlite": 16, "postgres": 4}
# The visits each point gets in one run over this portfolio (19 notices, batches of 4).
VISITS = {"after_select": 3, "in_chunk": 2, "after_claim": 5, "in_claim": 6,
          "after_accept": 19}
FORK = multiprocessing.get_context("fork")


def _portfolio() -> str:
    subscriptions = [{"id": f"m{i}", "customer_id": "c1", "product": "TBox", "licences": 2,
                      "start_date": "2026-03-15", "anniversary_date": "2027-03-15",
                      "term_months": 12, "auto_renew": False} for i in range(8)]
    return as_json(portfolio(subscriptions=subscriptions))


def _imported(engine: Engine, queued: bool) -> None:
    upgrade(engine)
    import_data(engine, _portfolio(), POLICY, started_at=datetime.now(UTC))
    if queued:  # a pass that queued and built its notices, and sent nothing
        run_pass(engine, POLICY, T, deliver=lambda _moment: DeliveryCounts("none"))


class Backend:
    """Fresh databases from two templates: imported, and imported then queued."""

    def __init__(self, name: str, tmp: Path, server: str | None) -> None:
        self.name, self.tmp, self.server = name, tmp, server
        self.count = 0
        for queued in (False, True):
            url = self._new(None)
            engine = make_engine(url)
            _imported(engine, queued)
            engine.dispose()
            self._templates = getattr(self, "_templates", {})
            self._templates[queued] = url

    def fresh(self, queued: bool) -> str:
        return self._new(self._templates[queued])

    def _new(self, template: str | None) -> str:
        self.count += 1
        if self.server is None:
            path = self.tmp / f"crash{self.count}.db"
            if template is not None:
                shutil.copy(template.removeprefix("sqlite:///"), path)
            return f"sqlite:///{path}"
        name = f"crash_{self.count}"
        suffix = f" TEMPLATE {template.rsplit('/', 1)[1]}" if template else ""
        admin = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}{suffix}"))
        admin.dispose()
        return self.server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    with running_sink() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Backend:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return Backend(request.param, tmp_path_factory.mktemp("crash"), server)


def _run(url: str, smtp_url: str, clock: Callable[[], datetime]) -> None:
    engine = make_engine(url)
    settings = Settings(smtp_url=smtp_url)
    try:
        run_pass(engine, POLICY, T, clock=clock, deliver=lambda moment: deliver_due(
            engine, POLICY, settings, moment, clock=clock))
    finally:
        engine.dispose()


def _crashing_run(url: str, smtp_url: str, spec: str) -> None:
    crashpoints.arm(spec)
    _run(url, smtp_url, lambda: datetime.now(UTC))


def _after_lease() -> datetime:
    return datetime.now(UTC) + LEASE + timedelta(minutes=1)


def _wait_for_orphans(url: str) -> None:
    """PostgreSQL ends a killed client's transaction when it notices the socket closed:
    wait for that, or a SKIP LOCKED claim would pass over its rows."""
    if not url.startswith("postgresql"):
        return
    engine = make_engine(url)
    deadline = time.monotonic() + 20
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND pid <> pg_backend_pid()")
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if not connection.scalar(query):
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()


def _notices(url: str) -> list[tuple[str, str | None, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return [(row.status, row.message_id, row.claim_token) for row in connection.execute(
                select(NOTIFICATIONS.c.status, NOTIFICATIONS.c.message_id,
                       NOTIFICATIONS.c.claim_token))]
    finally:
        engine.dispose()


def _crash_and_recover(backend: Backend, sink: Sink, point: str, visit: int) -> Counter[str]:
    url = backend.fresh(queued=point in ("after_claim", "in_claim", "after_accept"))
    mark = sink.mark()
    child = FORK.Process(target=_crashing_run, args=(url, sink.url, f"{point}:{visit}"))
    child.start()
    child.join(timeout=120)
    assert -signal.SIGKILL == child.exitcode, f"{point}:{visit} was not reached"
    _wait_for_orphans(url)
    _run(url, sink.url, _after_lease)
    notices = _notices(url)
    assert {"sent"} == {status for status, _, _ in notices}, f"{point}:{visit}"
    assert [] == [token for _, _, token in notices if token is not None]
    received = sink.received(mark)
    assert {mid for _, mid, _ in notices} == set(received), f"{point}:{visit}"
    return received


@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_a_crash_at_any_point_loses_nothing_and_only_the_250_window_sends_twice(
    backend: Backend, sink: Sink, point: str
) -> None:
    """Every notice delivered after a kill anywhere; twice only after the server's 250
    and before the record, with the same Message-ID, and at most BOUND per kill."""
    doubled = []
    for rep in range(REPS[backend.name]):
        visit = 1 + (rep * 7) % VISITS[point]
        received = _crash_and_recover(backend, sink, point, visit)
        doubled.append(sum(count - 1 for count in received.values()))
    if point == "after_accept":
        assert all(1 <= twice <= BOUND for twice in doubled), doubled
    else:
        assert {0} == set(doubled), doubled
