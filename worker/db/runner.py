"""Transactions that outlive an outage: `Database.run(work)` runs `work(connection)` in
one transaction, on a worker thread for a server (PostgreSQL), so an event loop goes on
while the database answers, or on the loop itself for SQLite, whose work is local and
short: handing it to a thread cost more than it saved (the two threads take turns on the
interpreter lock, and each hand-over wakes the loop), 0.61 of plain aiosmtplib against
0.66 inline, measured with scripts/bench_delivery.py.

When the database is away (a connection refused or cut, a restart, a lock that does not
clear) the call is tried again with a doubling delay (`worker.db.failures.
database_backoff`) until the database answers; the outage is logged once when it starts
and once when it ends (`worker.support.outage`), and `up` is clear while it lasts, so a
drain starts no new send. A transaction PostgreSQL rolled back to break a deadlock is
tried again after a few milliseconds, without pausing anything. Anything else (a bug, a
statement refused for good) is raised.

Imports: worker.db.failures, worker.support, worker.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from worker.db.failures import conflict_delay, database_backoff, is_conflict, is_outage
from worker.errors import describe
from worker.support.outage import OUTAGES

log = structlog.get_logger("worker.db.runner")
T = TypeVar("T")


class GaveUp(Exception):
    """`Database.run` stopped retrying because its caller no longer needs the result."""


class Database:
    """Transactions that wait out an outage, on worker threads or on the loop (module
    docstring).

    A caller that runs one transaction after another (`lane="writer"`) keeps its own
    connection between them: no pool checkout and no liveness ping (a round trip on
    PostgreSQL) per commit. A lane's connection is dropped when it fails and opened
    again on the next attempt; `close` ends them all."""

    def __init__(
        self, engine: Engine, backoff: Callable[[int], float] = database_backoff,
        inline: bool | None = None, component: str = "delivery",
    ) -> None:
        self.engine = engine
        self.component = component  # who logs an outage: the mail drain, the webhooks
        self.backoff = backoff
        # On the loop for SQLite (module docstring); a lock another process holds then
        # stops the loop too, as long as SQLite's busy timeout, and the senders with it.
        self.inline = engine.dialect.name == "sqlite" if inline is None else inline
        self.up = asyncio.Event()
        self.up.set()
        self._failures = 0
        self._conflicts = 0
        self._down_since = 0.0
        self._lanes: dict[str, Connection] = {}

    async def run(
        self, work: Callable[[Connection], T], *, give_up: Callable[[], bool] | None = None,
        lane: str | None = None,
    ) -> T:
        """`work`'s result once a transaction running it has committed. Retried while
        the database is away and after a conflict; `give_up()` true between attempts
        raises `GaveUp`."""
        while True:
            try:
                if self.inline:
                    result = self._transaction(work, lane)
                else:
                    result = await asyncio.to_thread(self._transaction, work, lane)
            except DBAPIError as error:
                if is_conflict(error):
                    self._conflicts += 1
                    log.info("transaction_retried", reason=describe(error.orig or error),
                             conflicts=self._conflicts)
                    await asyncio.sleep(conflict_delay(self._conflicts))
                elif is_outage(error):
                    self._failed(error)
                    await asyncio.sleep(self.backoff(self._failures))
                else:
                    raise
                if give_up is not None and give_up():
                    raise GaveUp from error
                continue
            self._answered()
            return result

    def _transaction(self, work: Callable[[Connection], T], lane: str | None) -> T:
        if lane is None:
            with self.engine.begin() as connection:
                return work(connection)
        held = self._lanes.get(lane)
        if held is None:
            held = self.engine.connect()
            self._lanes[lane] = held
        try:
            with held.begin():
                return work(held)
        except Exception:
            del self._lanes[lane]
            with contextlib.suppress(Exception):
                held.invalidate()
            raise

    def close(self) -> None:
        """End the lanes' connections."""
        lanes, self._lanes = list(self._lanes.values()), {}
        for connection in lanes:
            with contextlib.suppress(Exception):
                connection.close()

    def _failed(self, error: DBAPIError) -> None:
        self._failures += 1
        if self.up.is_set():
            self.up.clear()
            self._down_since = time.monotonic()
        OUTAGES.failed(str(error.orig or error).strip()[:300], component=self.component,
                       action="sending paused; outcomes kept and written when it answers")

    def _answered(self) -> None:
        if not self.up.is_set():
            OUTAGES.answered()
            self.up.set()
        self._failures = self._conflicts = 0
