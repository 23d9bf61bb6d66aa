"""One log of database outages per process.

The pass (through the service) and the mail drain each notice a database that went away,
and each backs off in its own way; the operator reads one `database_unavailable` when
the first of them notices and one `database_available` when the first of them gets an
answer again, not one per component, per row or per retry.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("worker.database")


class OutageLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0

    def failed(self, error: str, **context: Any) -> None:
        """A database call failed for want of a database."""
        with self._lock:
            self._failures += 1
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("database_unavailable", error=error, **context)
            else:
                log.debug("database_still_unavailable", error=error, **context)

    def answered(self) -> None:
        """A database call succeeded: an outage in progress is over."""
        with self._lock:
            if self._down_since is not None:
                log.info("database_available", failures=self._failures,
                         outage_seconds=round(time.monotonic() - self._down_since, 1))
            self._down_since, self._failures = None, 0


OUTAGES = OutageLog()
