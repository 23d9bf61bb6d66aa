"""`/healthz` and `/metrics` for `start`, on HEALTH_PORT (loopback or all interfaces).

Both read the database, so they report what the passes really did, whichever replica ran
them: `/healthz` answers 200 while the newest finished pass is younger than three pass
intervals (503 otherwise, or when the database cannot be read); `/metrics` gives
Prometheus text: notices per delivery state, subscriptions per bucket, customers per
payment standing, and the age and outcome of the last pass.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine, select

from worker.db.dashboard import dashboard
from worker.db.schema import PASSES


def last_pass(engine: Engine) -> dict[str, Any] | None:
    query = (select(PASSES.c.id, PASSES.c.as_of, PASSES.c.finished_at, PASSES.c.outcome)
             .where(PASSES.c.finished_at.is_not(None), PASSES.c.dry_run.is_(False),
                    PASSES.c.trigger != "forecast")
             .order_by(PASSES.c.id.desc()).limit(1))
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return dict(row._mapping) if row is not None else None


def health(engine: Engine, now: datetime, stale_after: timedelta) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): healthy while the last pass finished within `stale_after`."""
    try:
        newest = last_pass(engine)
    except Exception as error:  # a database that cannot be read is the answer
        return 503, {"status": "database unavailable", "error": type(error).__name__}
    if newest is None:
        return 503, {"status": "no pass yet"}
    age = (now - newest["finished_at"]).total_seconds()
    body = {"status": "ok" if age <= stale_after.total_seconds() else "stale",
            "last_pass": {"id": newest["id"], "as_of": newest["as_of"].isoformat(),
                          "finished_at": newest["finished_at"].isoformat(),
                          "outcome": newest["outcome"], "age_seconds": round(age, 1)}}
    return (200 if body["status"] == "ok" else 503), body


def metrics(engine: Engine, now: datetime) -> str:
    with engine.connect() as connection:
        board = dashboard(connection)
    lines: list[str] = []
    gauges = (("worker_notifications", "Notices per delivery state", "status",
               board["notifications"]),
              ("worker_subscriptions", "Subscriptions per bucket", "bucket",
               board["subscriptions"]),
              ("worker_customers", "Customers per payment standing", "standing",
               board["customers"]))
    for name, text, label, counts in gauges:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{{label}="{key}"}} {value}' for key, value in sorted(counts.items())]
    newest = last_pass(engine)
    if newest is not None:
        age = (now - newest["finished_at"]).total_seconds()
        lines += ["# HELP worker_last_pass_age_seconds Seconds since the last pass finished",
                  "# TYPE worker_last_pass_age_seconds gauge",
                  f"worker_last_pass_age_seconds {age:.1f}",
                  "# HELP worker_last_pass_ok 1 when the last pass processed every record",
                  "# TYPE worker_last_pass_ok gauge",
                  f"worker_last_pass_ok {1 if newest['outcome'] == 'done' else 0}"]
    return "\n".join(lines) + "\n"


def serve_health(
    engine: Engine, port: int, now: Callable[[], datetime], stale_after: timedelta
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; call `.shutdown()` to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                status, body = health(engine, now(), stale_after)
                self._reply(status, "application/json", json.dumps(body))
            elif self.path == "/metrics":
                self._reply(200, "text/plain; version=0.0.4", metrics(engine, now()))
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

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - probes come from outside
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
