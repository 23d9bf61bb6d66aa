"""One log of database outages per process.

The pass (through the service) and the mail drain each notice a database that went away,
and each backs off in its own way; the operator reads one `database_unavailable` when
the first of them notices and one `database_available` when the first of them gets an
answer again, not one per component, per row or per retry.

A connection held across the outage (the drain keeps one between its commits) may only
fail after another has already reconnected: a failure within `SETTLE_SECONDS` of the
recovery is the tail of the same outage, logged at debug level, not a new one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("worker.database")
SETTLE_SECONDS = 10.0


class OutageLog:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget any outage: the database is taken to be up."""
        self._down_since: float | None = None
        self._back_at: float | None = None
        self._failures = 0

    def failed(self, error: str, **context: Any) -> None:
        """A database call failed for want of a database."""
        with self._lock:
            self._failures += 1
            now = self._clock()
            if self._down_since is not None:
                log.debug("database_still_unavailable", error=error, **context)
            elif self._back_at is not None and now - self._back_at < SETTLE_SECONDS:
                self._down_since = now  # a connection held across it: the same outage
                log.debug("database_still_unavailable", error=error, **context)
            else:
                self._down_since, self._back_at = now, None
                log.warning("database_unavailable", error=error, **context)

    def answered(self) -> None:
        """A database call succeeded: an outage in progress is over."""
        with self._lock:
            if self._down_since is not None:
                if self._back_at is None:
                    log.info("database_available", failures=self._failures,
                             outage_seconds=round(self._clock() - self._down_since, 1))
                self._back_at = self._clock()
            self._down_since, self._failures = None, 0


OUTAGES = OutageLog()
