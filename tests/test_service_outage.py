"""PostgreSQL restarted under a running `start` (maintenance, failover): the outage is
logged once, the broken pass is closed `failed`, the service reconnects by itself and
health goes 503 then back to 200 as soon as a pass succeeds.

The server is this test's own (a restart would cut every other test's connections)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.net import free_port
from testkit.portfolios import build_first_pass
from testkit.postgres import PostgresUnavailable, Server, server_process
from tests.service_process import count, events, get, started, stop, wait_for
from worker.db.schema import NOTIFICATIONS, PASSES, TRANSITIONS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def own_server() -> Iterator[Server]:
    try:
        with server_process() as server:
            yield server
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {error}")
        pytest.skip(f"PostgreSQL tests skipped locally: {error}")


def test_a_postgresql_restart_is_one_outage_and_health_comes_back(
    own_server: Server, tmp_path: Path
) -> None:
    """Restart the server in the middle of a pass: one `database_unavailable`, one
    `database_available`, the cut pass `failed` with its error, a new pass `done`, and
    /healthz 503 then 200 without a restart of the worker."""
    url = own_server.url
    build_first_pass(url, 8_000)
    port = free_port()
    log = tmp_path / "start.log"
    with started(url, tmp_path, HEALTH_PORT=str(port)) as service:
        wait_for(lambda: count(url, TRANSITIONS) > 0, 60, service, log)
        own_server.restart()
        seen: list[tuple[int, str]] = []
        deadline = time.monotonic() + 120
        while not (seen and seen[-1][0] == 200):
            assert service.poll() is None, log.read_text()
            assert time.monotonic() < deadline, (seen[-5:], log.read_text())
            status, body = get(port, "/healthz")
            seen.append((status, json.loads(body)["reason"]))
            time.sleep(0.1)
        healthy = json.loads(get(port, "/healthz")[1])
        seconds = stop(service)
    names = [e["event"] for e in events(log)]
    outage = [reason for status, reason in seen if status == 503
              and reason.startswith(("last pass 1 failed: OperationalError",
                                     "database unavailable: OperationalError"))]
    assert outage, seen
    assert 0 == service.returncode, log.read_text()
    assert seconds < 10
    assert (1, 1) == (names.count("database_unavailable"), names.count("database_available")), \
        log.read_text()
    assert 1 == count(url, PASSES, PASSES.c.outcome == "failed")
    assert 1 == count(url, PASSES, PASSES.c.outcome == "failed", PASSES.c.error.is_not(None))
    assert "done" == healthy["last_pass"]["outcome"]
    assert 0 == count(url, PASSES, PASSES.c.outcome == "running")
    assert 0 == count(url, NOTIFICATIONS, NOTIFICATIONS.c.claim_token.is_not(None))


def _live(port: int) -> bool:
    try:
        return get(port, "/livez")[0] == 200
    except OSError:
        return False


def _logged(log: Path, name: str) -> bool:
    return any(event["event"] == name for event in events(log))


def test_start_waits_for_a_database_that_is_not_up_yet(own_server: Server, tmp_path: Path) -> None:
    """`start` before its database (a host booting, a managed database still starting):
    the process stays up, /livez 200 and /readyz 503, one `database_unavailable`; once the
    server answers, the schema is brought up, a pass runs and /readyz is 200."""
    url = own_server.url
    own_server.stop()
    port = free_port()
    log = tmp_path / "start.log"
    with started(url, tmp_path, HEALTH_PORT=str(port)) as service:
        wait_for(lambda: _live(port) and _logged(log, "database_unavailable"), 30, service,
                 log)
        waiting = get(port, "/readyz")
        own_server.start()
        wait_for(lambda: get(port, "/readyz")[0] == 200, 60, service, log)
        seconds = stop(service)
    names = [e["event"] for e in events(log)]
    assert 503 == waiting[0], waiting
    assert "database unavailable" in json.loads(waiting[1])["reason"]
    assert 0 == service.returncode, log.read_text()
    assert seconds < 10
    assert (1, 1) == (names.count("database_unavailable"), names.count("database_available")), \
        log.read_text()
    assert "start_failed" not in names
    assert 1 == count(url, PASSES, PASSES.c.outcome == "done")


def test_a_stop_while_waiting_for_the_database_exits_0(own_server: Server, tmp_path: Path) -> None:
    own_server.stop()
    port = free_port()
    log = tmp_path / "start.log"
    with started(own_server.url, tmp_path, HEALTH_PORT=str(port)) as service:
        wait_for(lambda: _live(port) and _logged(log, "database_unavailable"), 30, service,
                 log)
        seconds = stop(service)
    assert 0 == service.returncode, log.read_text()
    assert seconds < 5, log.read_text()
