"""One leased-queue drain, for the mail and the webhooks alike.

A `Queue` says only what differs: how to claim its rows, what to do with a claimed
batch before sending (the mail's send window and message building), how to send one
item and settle its answer, and how to record settlements. The drain does the rest:

Claims. A claimer task claims a batch in one transaction (`Queue.claim`: rows due and
not leased by another process get this drain's token and a lease; PostgreSQL picks them
with FOR UPDATE SKIP LOCKED, SQLite's BEGIN IMMEDIATE serialises the conditional UPDATE)
and feeds the senders through a queue; the next batch is claimed once every outcome of
this one is committed, so a kill inside or just after a claim sends nothing twice. Only
the rows a claim returned are sent, so two processes never send one row at once. Each
claim counts in the row's `unsettled_claims`; a row claimed more than
`schedule.hold_after` times in a row without an outcome recorded is held, not sent
(worker.db.leases): a write that is always refused no longer sends the same rows again
at every drain. The lease is renewed every third of its length while the drain runs; a
refused renewal is logged and the next one tried.

Sends. At most `Queue.concurrency` at once. Before each: nothing new once stopping,
nothing while the database is away (a send in hand finishes; its outcome waits), and
nothing while the writer holds `most` outcomes not yet committed.

Records. Outcomes are written by group commit (worker.drain.writer): kept in memory
until the transaction recording them has committed. So a SIGKILL sends again at most
`most - 1 + concurrency` rows (10 with 4 connections), after their lease, with the same
Message-ID or webhook-id.

What a crash leaves (`worker.support.crashpoints` reaches each in the tests): inside a
claim, nothing (the claim is rolled back); after a claim, leased rows that wait for
their lease to end and then go out once; after the server's answer and before the
commit, the outcomes not yet committed: those rows go out again after the lease.

A stop request (`stop`: a `threading.Event` or a callable, worker.support.stopping)
claims nothing more, sends nothing more, finishes the sends in hand, writes every
outcome and gives back the leases of the rows claimed and not sent, so another process
takes them at once. The database going away is waited out (worker.db.runner): nothing
new is sent, the outcomes in hand are kept and written when it answers. A write refused
for good (a bug, not an outage) stops the drain: nothing more is claimed or sent, the
rest is given back, and the error is raised.

Imports: worker.drain.writer, worker.drain.schedule, worker.db, worker.support,
worker.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import structlog
from sqlalchemy import Connection, Engine, Table

from worker.db.leases import extend_leases, release_leases
from worker.db.runner import Database, GaveUp
from worker.drain.schedule import RetrySchedule
from worker.drain.writer import OutcomeWriter
from worker.errors import describe
from worker.support import crashpoints
from worker.support.stopping import Stop, requested

log = structlog.get_logger("worker.drain")
I = TypeVar("I")  # noqa: E741 - an item of the queue, as claimed
S = TypeVar("S")  # a settlement: the row's new values after one attempt
Clock = Callable[[], datetime]


class Queue(Protocol[I, S]):
    """What one queue gives the drain."""

    component: str  # names the queue in logs and outage reports: "delivery", "webhooks"
    table: Table  # its rows: `id`, `claim_token`, `claimed_until`, `unsettled_claims`
    schedule: RetrySchedule
    concurrency: int  # items sent at once
    # Outcomes that may wait for their commit: what a SIGKILL can send again is this
    # plus `concurrency` - 1 in flight. The mail keeps it at 2 x concurrency - 1 (10 in
    # all with 4 connections); the webhooks, whose receivers de-duplicate on the
    # webhook-id, group more outcomes per commit.
    unrecorded: int
    linger: float  # seconds a commit waits for more outcomes after the first in hand

    def claim(self, connection: Connection, token: str, size: int) -> list[I]:
        """Lease up to `size` due items to `token` (those claimed too often are held)."""

    async def prepare(self, batch: list[I], drain: Drain[I, S]) -> list[I]:
        """What of a claimed batch goes out now (the rest it settles or leaves)."""

    async def send(self, item: I, drain: Drain[I, S]) -> S | None:
        """One attempt and its settlement; None leaves the item untried (released)."""

    def write(self, connection: Connection, settlements: Sequence[S]) -> None:
        """Record settlements and give their leases back (`unsettled_claims` to 0)."""

    def item_id(self, item: I) -> int: ...

    def settlement_id(self, settlement: S) -> int: ...

    async def close(self) -> None:
        """The drain has ended: close connections to the outside world."""


class Drain(Generic[I, S]):
    """Claims, sends and records until nothing is due, `limit` items were handled or
    `stop` is set (see the module docstring). Made inside the event loop that runs it."""

    def __init__(self, engine: Engine, queue: Queue[I, S], *, clock: Clock,
                 limit: int | None = None, stop: Stop = None) -> None:
        self.queue, self.clock, self.limit, self.stop = queue, clock, limit, stop
        self.token = uuid.uuid4().hex
        self.database = Database(engine, component=queue.component)
        # Outcomes waiting for a commit plus sends in flight stay under `unrecorded` +
        # `concurrency` - 1: the most a SIGKILL can send twice.
        self.writer: OutcomeWriter[S] = OutcomeWriter(
            self.database, queue.write, most=max(1, queue.unrecorded), linger=queue.linger)
        self._handled = 0
        self._broken: BaseException | None = None  # a send raised: the drain ends with it
        self._unsettled: set[int] = set()  # tried, no settlement (a send that raised)

    def stopping(self) -> bool:
        return requested(self.stop)

    def record(self, settlement: S) -> None:
        """Hand a settlement to the writer (the queue's `prepare` may settle items too)."""
        self.writer.add(settlement)

    async def run(self) -> None:
        writer = asyncio.create_task(self.writer.run())
        heartbeat = asyncio.create_task(self._keep_lease())
        try:
            await self._pump()
        finally:
            heartbeat.cancel()
            try:
                await self.writer.flushed()  # every outcome committed before any release
            finally:
                writer.cancel()
                await self.queue.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.gather(writer, heartbeat, return_exceptions=True)
                self.database.close()
                await self._release()
        if self._broken is not None:
            raise self._broken

    async def _pump(self) -> None:
        """One claimer feeds the senders through a queue, a batch at a time."""
        size = self.queue.schedule.batch
        items: asyncio.Queue[I | None] = asyncio.Queue(maxsize=size)
        senders = [asyncio.create_task(self._sender(items))
                   for _ in range(max(1, self.queue.concurrency))]
        try:
            try:
                await self._claimer(items)
            except Exception as error:  # a claim or a preparation refused: send no more
                self._broken = self._broken or error
                raise
            finally:  # the senders finish the sends in hand, then see the end
                for _ in senders:
                    await items.put(None)
                await asyncio.gather(*senders)
        finally:
            for sender in senders:
                sender.cancel()

    async def _claimer(self, items: asyncio.Queue[I | None]) -> None:
        while (not self.stopping() and self._failure() is None
               and (self.limit is None or self._handled < self.limit)):
            try:
                batch = await self._claim()
            except GaveUp:
                return
            if not batch:
                return
            self._handled += len(batch)
            for item in await self.queue.prepare(batch, self):
                await items.put(item)
            await items.join()  # every item of the batch sent (or left)
            await self.writer.flushed()  # and recorded: the next claim finds nothing unrecorded

    async def _claim(self) -> list[I]:
        size = self.queue.schedule.batch if self.limit is None else min(
            self.queue.schedule.batch, self.limit - self._handled)

        def work(connection: Connection) -> list[I]:
            batch = self.queue.claim(connection, self.token, size)
            crashpoints.reached("in_claim")
            return batch

        batch = await self.database.run(work, give_up=self.stopping)
        crashpoints.reached("after_claim")
        return batch

    async def _sender(self, items: asyncio.Queue[I | None]) -> None:
        """Takes items until the end; once stopping (or the writer broke) it only takes
        them off the queue, so the claimer never waits on a full one."""
        while (item := await items.get()) is not None:
            try:
                await self._send(item)
            finally:
                items.task_done()

    async def _send(self, item: I) -> None:
        await self.database.up.wait()
        with contextlib.suppress(Exception):  # a broken writer raises: checked below
            await self.writer.room()
        if self.stopping() or self._failure() is not None:
            return  # left claimed: released at the end (a failure: raised then)
        try:
            settlement = await self.queue.send(item, self)
        except Exception as error:  # a bug: the drain ends with it, never hangs
            log.exception("send_failed", queue=self.queue.component)
            self._unsettled.add(self.queue.item_id(item))
            self._broken = self._broken or error
            return
        if settlement is not None:
            self.record(settlement)

    def _failure(self) -> BaseException | None:
        """What ends the drain early: a writer stopped for good, or a send that raised."""
        return self.writer.broken or self._broken

    async def _keep_lease(self) -> None:
        """Extend the lease every third of it: a batch slowed down by a server that
        takes its time (timeouts of minutes) is never claimed by another process."""
        lease = self.queue.schedule.lease
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:  # an outage is waited out inside `run`; anything else is said, not fatal
                await self.database.run(lambda c: extend_leases(
                    c, self.queue.table, self.token, self.clock() + lease))
            except Exception as error:
                log.warning("lease_not_extended", queue=self.queue.component,
                            error=describe(error))

    async def _release(self) -> None:
        """Give back the leases still held: rows never tried lose the claim's count, rows
        tried whose outcome was not written keep it (a poison pill is held after a few)."""
        unrecorded = self._unsettled | {self.queue.settlement_id(s)
                                         for s in self.writer.unwritten}
        with contextlib.suppress(GaveUp):
            await self.database.run(
                lambda c: release_leases(c, self.queue.table, self.token, unrecorded),
                give_up=self.stopping)
