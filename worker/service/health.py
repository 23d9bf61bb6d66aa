"""Health: one verdict for `/healthz`, `/readyz` and `renewal-worker check`; the endpoint.

Healthy means: the database answers, and the newest pass that ended (done, partial or
failed; interrupted and abandoned ones say nothing about the service) did not fail and
finished less than `stale_after` ago (three pass intervals). It reads the database, so
it tells the truth whichever replica ran the pass: 503 while the database does not
answer or the last pass failed, 200 again as soon as a pass succeeds.

The endpoint (`start`, HEALTH_HOST:HEALTH_PORT, loopback by default):
- `/livez`: 200 while the process serves (it does not touch the database);
- `/readyz`: the verdict, and 503 once the process is stopping;
- `/healthz`: the verdict, with the detail as JSON;
- `/metrics`: Prometheus text (`worker.service.metrics`).

It is served by `HealthServer`, an asyncio server with a real listen backlog, a deadline
for each request's head (slow-loris sockets are closed), a bound on open connections
and a few threads for the routes that read the database (the limits are below).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Connection, Engine, select

from worker.config.policy import Policy
from worker.db.schema import PASSES
from worker.errors import describe
from worker.service.metrics import exposition

ENDED = ("done", "partial", "failed")


@dataclass(frozen=True)
class Verdict:
    """Healthy or not, one line saying why, and the detail for `/healthz`."""

    healthy: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 200 if self.healthy else 503

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.healthy else "unhealthy", "reason": self.reason,
                **self.detail}


def stale_after(policy: Policy) -> timedelta:
    """How old the newest pass may be: three pass intervals."""
    return timedelta(minutes=3 * policy.schedule.pass_every_minutes)


def _pass_row(connection: Connection, *outcomes: str) -> dict[str, Any] | None:
    c = PASSES.c
    query = (select(c.id, c.as_of, c.started_at, c.finished_at, c.outcome, c.host, c.pid,
                    c.error)
             .where(c.outcome.in_(outcomes), c.finished_at.is_not(None), c.dry_run.is_(False),
                    c.trigger != "forecast")
             .order_by(c.finished_at.desc(), c.id.desc()).limit(1))
    row = connection.execute(query).first()
    if row is None:
        return None
    found = dict(row._mapping)
    for key in ("as_of", "started_at", "finished_at"):
        found[key] = found[key].isoformat()
    return found


def _running(connection: Connection) -> list[dict[str, Any]]:
    c = PASSES.c
    rows = connection.execute(
        select(c.id, c.host, c.pid, c.started_at, c.heartbeat_at)
        .where(c.outcome == "running", c.dry_run.is_(False)).order_by(c.id))
    return [{"id": r.id, "host": r.host, "pid": r.pid, "started_at": r.started_at.isoformat(),
             "heartbeat_at": r.heartbeat_at.isoformat() if r.heartbeat_at else None}
            for r in rows]


def verdict(engine: Engine, now: datetime, allowed: timedelta) -> Verdict:
    """The health condition (see the module docstring), judged at real time `now`."""
    try:
        with engine.connect() as connection:
            newest = _pass_row(connection, *ENDED)
            detail = {"database": "up", "last_pass": newest,
                      "last_abandoned": _pass_row(connection, "abandoned"),
                      "running": _running(connection)}
    except Exception as error:  # a database that cannot be read is the answer
        return Verdict(False, f"database unavailable: {describe(error)}",
                       {"database": "down"})
    if newest is None:
        return Verdict(False, "no pass has finished yet", detail)
    age = now - datetime.fromisoformat(newest["finished_at"])
    newest["age_seconds"] = round(age.total_seconds(), 1)
    if newest["outcome"] == "failed":
        return Verdict(False, f"last pass {newest['id']} failed: {newest['error']}", detail)
    if age > allowed:
        return Verdict(False, f"last pass {newest['id']} finished {_span(age)} ago "
                              f"(allowed {_span(allowed)})", detail)
    return Verdict(True, f"last pass {newest['id']} finished {_span(age)} ago "
                         f"({newest['outcome']})", detail)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


# The endpoint's limits. A probe is one short request: its head must arrive whole
# within HEAD_SECONDS (a slow-loris socket that trickles bytes is closed then, however
# alive it looks), and its answer leave within WRITE_SECONDS. At most MAX_CONNECTIONS
# sockets are served at once (more are closed at once: they cost no thread, the event
# loop holds them), BACKLOG more wait in the kernel's queue, and the routes that read
# the database run on DATABASE_THREADS threads, so a burst of probes never opens more
# database connections than that.
BACKLOG = 1024
MAX_CONNECTIONS = 512
HEAD_SECONDS = 5.0
WRITE_SECONDS = 5.0
MAX_HEAD_BYTES = 8192
DATABASE_THREADS = 4

Answer = tuple[int, str, bytes]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class HealthServer:
    """An asyncio server in a thread of its own: one request per connection, answered
    and closed (`Connection: close`), so no socket stays idle after its answer.

    `answer(path)` gives (status, content type, body); it runs on the database threads,
    except `/livez`, answered on the event loop without touching anything.
    """

    def __init__(self, answer: Callable[[str], Answer], host: str, port: int, *,
                 head_seconds: float = HEAD_SECONDS) -> None:
        self._answer = answer
        self._head_seconds = head_seconds
        self._open = 0
        self._pool = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="health-db")
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(
                self._serve, host, port, backlog=BACKLOG, limit=MAX_HEAD_BYTES,
                reuse_address=True))
        except BaseException:
            self._loop.close()
            self._pool.shutdown(wait=False)
            raise
        self.server_address = self._server.sockets[0].getsockname()
        self._thread = threading.Thread(target=self._loop.run_forever, name="health",
                                        daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop listening, close what is open, end the thread (safe to call twice)."""
        if self._loop.is_closed():
            return

        async def close() -> None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), WRITE_SECONDS)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(WRITE_SECONDS + 1)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WRITE_SECONDS)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if not self._thread.is_alive():
            self._loop.close()

    def server_close(self) -> None:
        """Kept for callers written for `http.server`: shutdown() already closed it."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._open += 1
        answered = False
        try:
            answer = await self._request(reader)
            if answer is not None:
                await self._reply(writer, *answer)
                answered = True
        except (OSError, TimeoutError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            self._open -= 1
            if answered:
                writer.close()
            else:
                writer.transport.abort()

    async def _request(self, reader: asyncio.StreamReader) -> Answer | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                          self._head_seconds)
        except asyncio.LimitOverrunError:
            return 431, "text/plain", b"request head too large\n"
        except (asyncio.IncompleteReadError, TimeoutError):
            return None  # closed early, or too slow: a slow-loris socket ends here
        return await self._route(head)

    async def _route(self, head: bytes) -> Answer:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request\n"
        if parts[0] != "GET":
            return 405, "text/plain", b"only GET\n"
        path = parts[1].split("?", 1)[0]
        if path == "/livez":
            return 200, "application/json", b'{"status": "ok"}'
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._answer, path)
        except Exception as error:  # the answer is the error, in one line
            return 500, "text/plain", f"{describe(error)}\n".encode()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, content_type: str,
                     body: bytes) -> None:
        writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode("latin-1") + body)
        await asyncio.wait_for(writer.drain(), WRITE_SECONDS)


def serve_health(
    engine: Engine, host: str, port: int, now: Callable[[], datetime], allowed: timedelta,
    stopping: Callable[[], bool] = lambda: False,
) -> HealthServer:
    """Start the endpoint in a daemon thread; call `.shutdown()` to stop it. Raises
    OSError when the address cannot be listened on."""

    def answer(path: str) -> Answer:
        if path in ("/healthz", "/readyz"):
            judged = verdict(engine, now(), allowed)
            status, body = judged.http_status, judged.body()
            if path == "/readyz" and stopping():
                status, body = 503, {"status": "stopping", "reason": "shutting down"}
            return status, "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, exposition(engine, now)
        return 404, "text/plain", b"not found\n"

    return HealthServer(answer, host, port)
