"""Outcomes written by group commit, for a drain of any queue (mail, webhooks).

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

Imports: worker.db.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy import Connection

from worker.db.runner import Database

S = TypeVar("S")


class OutcomeWriter(Generic[S]):
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
        self, database: Database, write: Callable[[Connection, Sequence[S]], None],
        most: int = 4, linger: float = 0.005,
    ) -> None:
        self.database = database
        self.write = write
        self.most = most
        self.linger = linger
        self.commits = 0
        self._pending: list[S] = []
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

    @property
    def broken(self) -> BaseException | None:
        """What stopped the writer for good, if something did."""
        return self._broken

    @property
    def unwritten(self) -> list[S]:
        """The outcomes added and not committed (after a refused write: all it held)."""
        return list(self._pending)

    def add(self, settlement: S) -> None:
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

    def _writing(self, batch: list[S]) -> Callable[[Connection], None]:
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
