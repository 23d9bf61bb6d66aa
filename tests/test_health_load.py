"""The health endpoint under load and under slow clients: every one of 200 probes that
arrive at once is answered within a second, idle and trickling sockets are closed after
the head's deadline, and open sockets cost no thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from testkit.net import free_port
from worker.service.health import MAX_CONNECTIONS, HealthServer, serve_health

REAL_PROBES = 200


@pytest.fixture
def health(engine: Engine) -> Iterator[int]:
    from datetime import UTC, datetime, timedelta

    port = free_port()
    server = serve_health(engine, "127.0.0.1", port, lambda: datetime.now(UTC),
                          timedelta(minutes=45))
    yield port
    server.shutdown()


async def _probe(port: int, path: str = "/livez") -> tuple[int, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    reply = await reader.read()
    writer.close()
    return int(reply.split(b" ", 2)[1]), time.monotonic() - started


async def _burst(port: int, count: int) -> list[tuple[int, float]]:
    return await asyncio.gather(*(_probe(port) for _ in range(count)))


def test_two_hundred_probes_at_once_are_all_answered_within_a_second(health: int) -> None:
    """A burst the size of a busy orchestrator's: nothing dropped by the listen queue,
    nothing waits behind another probe."""
    answers = asyncio.run(_burst(health, REAL_PROBES))
    assert [200] * REAL_PROBES == [status for status, _seconds in answers]
    assert max(seconds for _status, seconds in answers) < 1.0


def test_a_probe_that_reads_the_database_answers_too(health: int) -> None:
    """/healthz goes through the database threads; a fresh database is not healthy yet."""
    status, _seconds = asyncio.run(_probe(health, "/healthz"))
    assert 503 == status


def _answer(path: str) -> tuple[int, str, bytes]:
    return 200, "text/plain", b"ok\n"


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_slow_loris_sockets_are_closed_after_the_head_deadline() -> None:
    """A socket that sends nothing, and one that trickles a header byte by byte, are both
    closed once the request head is late, and a probe still gets through meanwhile."""
    port = free_port()
    server = HealthServer(_answer, "127.0.0.1", port, head_seconds=0.5)
    try:
        idle = socket.create_connection(("127.0.0.1", port))
        trickle = socket.create_connection(("127.0.0.1", port))
        trickle.sendall(b"GET /livez HTTP/1.1\r\n")
        for char in b"X-Slow: 1":
            trickle.sendall(bytes([char]))
            time.sleep(0.05)
        assert 200 == asyncio.run(_probe(port))[0]
        assert _closed_within(idle, 3.0)
        assert _closed_within(trickle, 3.0)
    finally:
        idle.close()
        trickle.close()
        server.shutdown()


def test_many_idle_sockets_cost_no_thread_and_are_bounded() -> None:
    """Each connection is a task of one event loop, not a thread; past MAX_CONNECTIONS a
    socket is closed at once instead of waiting."""
    port = free_port()
    server = HealthServer(_answer, "127.0.0.1", port, head_seconds=5.0)
    before = threading.active_count()
    sockets = []
    try:
        for _ in range(300):
            sockets.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.3)
        assert threading.active_count() <= before + 1
        assert 200 == asyncio.run(_probe(port))[0]
    finally:
        for sock in sockets:
            sock.close()
        server.shutdown()
    assert MAX_CONNECTIONS >= 300
