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
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def serve_health(
    engine: Engine, host: str, port: int, now: Callable[[], datetime], allowed: timedelta,
    stopping: Callable[[], bool] = lambda: False,
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; call `.shutdown()` to stop it. Raises
    OSError when the address cannot be listened on."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._reply(200, "application/json", json.dumps({"status": "ok"}))
            elif path in ("/healthz", "/readyz"):
                judged = verdict(engine, now(), allowed)
                status, body = judged.http_status, judged.body()
                if path == "/readyz" and stopping():
                    status, body = 503, {"status": "stopping", "reason": "shutting down"}
                self._reply(status, "application/json", json.dumps(body))
            elif path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, exposition(engine, now).decode())
            else:
                self._reply(404, "text/plain", "not found\n")

        def _reply(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are not logged: probes would drown the pass events."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
