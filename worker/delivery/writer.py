"""The drains' way to the database (mail and webhooks): calls that outlive an outage,
and outcomes written by group commit.

`Database.run(work)` runs `work(connection)` in one transaction: on a worker thread for
a server (PostgreSQL), so the event loop goes on sending while the database answers; on
the loop itself for SQLite, whose work is local and short: handing it to a thread cost
more than it saved (the two threads take turns on the interpreter lock, and each hand-over
wakes the loop), 0.61 of plain aiosmtplib against 0.66 inline, measured with
scripts/bench_delivery.py. When the database is away (a
connection refused or cut, a restart, a lock that does not clear) the call is tried
again with a doubling delay until the database answers; the outage is logged once when
it starts and once when it ends, and `up` is clear while it lasts, so the drain starts
no new send. A transaction PostgreSQL rolled back to break a deadlock (worker.db.failures)
is tried again after a few milliseconds, without pausing anything.

`OutcomeWriter` keeps every outcome until the transaction that records it has
committed (cleared after the commit, never before). It commits once `most` outcomes are
in hand, or 5 ms after the first of them, or when the drain asks for a flush; senders
hold back while `most` outcomes wait for a commit. A sender checks before each message,
so outcomes waiting plus messages in flight never exceed `most - 1 + connections`, and
that is all a SIGKILL can send twice (the drain sets `most` to 2 x connections - 1: 10
with 4 connections). Without the bound a slow commit (a WAL checkpoint, a busy server)
let ten to thirty accepted messages pile up unrecorded. Without the wait for a group,
commits carried one or two outcomes each, and their fixed cost (a transaction, two
statements) made delivery a third slower (scripts/bench_delivery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from worker.db.failures import conflict_delay, is_conflict, is_outage
from worker.delivery.decisions import Settlement, database_backoff
from worker.outage import OUTAGES
from worker.pass_ledger import describe

log = structlog.get_logger("worker.outbox")
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


class OutcomeWriter:
    """Group commit of settlements through `write` (module docstring).

    `add` never blocks and never fails; `flushed()` returns once everything added so far
    is committed. When something stops the writer (a bug, a statement refused), `room()`
    and `flushed()` raise it: the senders stop instead of waiting for a commit that will
    never come, and the drain ends with the error.

    A commit waits until `most` outcomes are in hand, or `linger`
    seconds after the first of them, or someone awaits `flushed()`: whichever comes
    first. Each commit has a fixed cost (a transaction, two statements), so committing
    one or two outcomes at a time spends the sending loop's time on bookkeeping; a group
    of seven costs little more than one."""

    def __init__(
        self, database: Database, write: Callable[[Connection, Sequence[Settlement]], None],
        most: int = 4, linger: float = 0.005,
    ) -> None:
        self.database = database
        self.write = write
        self.most = most
        self.linger = linger
        self.commits = 0
        self._pending: list[Settlement] = []
        self._wake = asyncio.Event()  # something is pending
        self._enough = asyncio.Event()  # `most` are in hand, or a flush is awaited
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._flushing = 0
        self._broken: BaseException | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, settlement: Settlement) -> None:
        self._pending.append(settlement)
        if self._broken is not None:  # nobody will write it: `flushed` raises at once
            return
        self._idle.clear()
        self._wake.set()
        if len(self._pending) >= self.most:
            self._enough.set()
            self._room.clear()

    async def room(self) -> None:
        """Returns once fewer than `most` outcomes wait for their commit: a sender awaits
        it before each new message, so a slow commit (a checkpoint, a busy server)
        slows sending down instead of widening what a crash would send twice. Raises
        what stopped the writer, if something did."""
        await self._room.wait()
        if self._broken is not None:
            raise self._broken

    async def run(self) -> None:
        """The writer's task: commit what accumulated, again and again, until cancelled."""
        try:
            while True:
                await self._wake.wait()
                await self._gathered()
                batch = list(self._pending)
                await self.database.run(self._writing(batch), lane="writer")
                del self._pending[:len(batch)]  # only now: the commit is done
                self.commits += 1
                if len(self._pending) < self.most:
                    self._room.set()
                    if not self._flushing:
                        self._enough.clear()
                if not self._pending:
                    self._wake.clear()
                    self._idle.set()
        except Exception as error:  # a bug: let `flushed` raise it rather than hang
            self._broken = error
            self._idle.set()
            self._room.set()
            raise

    async def _gathered(self) -> None:
        """Returns when `most` are in hand, a flush is awaited, or `linger` is up."""
        if self._enough.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._enough.wait(), self.linger)

    def _writing(self, batch: list[Settlement]) -> Callable[[Connection], None]:
        return lambda connection: self.write(connection, batch)

    async def flushed(self) -> None:
        if self._broken is not None:
            raise self._broken
        self._flushing += 1
        self._enough.set()
        try:
            await self._idle.wait()
        finally:
            self._flushing -= 1
        if self._broken is not None:
            raise self._broken
