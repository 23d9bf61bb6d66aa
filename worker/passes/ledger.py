"""The `passes` table's side of a pass: who runs it, that it is alive, how it ended.

A pass row is opened `running` with its host, pid and a first heartbeat; a thread
renews the heartbeat every `schedule.heartbeat_seconds` while the pass runs; the row is
closed `done`, `partial`, `interrupted` (a stop request between chunks) or `failed`
(with its error). What a crash leaves behind, and who picks it up:

- the process dies (SIGKILL, OOM, host lost): the row stays `running`; the next pass
  anywhere marks it `abandoned` once its heartbeat is older than
  `schedule.abandon_after_minutes`, or at once when it ran on the same host and its
  process is gone (`abandon_reason`);
- the pass fails and the database is away, so `failed` cannot be written: the row
  stays `running`; `start` keeps the pass id and writes `failed` when the database
  answers again (`close_failed`), or the rule above applies if the process dies first.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, select, update

from worker.db.schema import PASSES
from worker.errors import describe

log = structlog.get_logger("worker.pass")
HOST = socket.gethostname()[:255]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Runner:
    """The process running a pass, as recorded in its row."""

    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Runner:
        return cls(HOST, os.getpid())


@dataclass(frozen=True, slots=True)
class RunningPass:
    """A `passes` row still marked `running`, as `abandon_reason` needs it."""

    id: int
    host: str | None
    pid: int | None
    started_at: datetime
    heartbeat_at: datetime | None


def pid_alive(pid: int) -> bool:
    """Does process `pid` exist on this host? (Signal 0 checks without signalling.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def abandon_reason(
    row: RunningPass, now: datetime, me: Runner, age: timedelta,
    alive: Callable[[int], bool] = pid_alive,
) -> str | None:
    """Why the running pass `row` is dead, or None while it may still be alive.

    On this host a pass whose process is gone is dead at once; anywhere, a pass whose
    last heartbeat (or start, before its first) is older than `age` is dead. A pass of
    this very process is judged by its heartbeat only (another thread may run it)."""
    if row.host == me.host and row.pid is not None and row.pid != me.pid and not alive(row.pid):
        return f"its process {row.pid} on {row.host} is gone"
    last = row.heartbeat_at or row.started_at
    if now - last > age:
        return f"no heartbeat since {last.isoformat()} (more than {age} ago)"
    return None


def mark_abandoned(
    connection: Connection, now: datetime, me: Runner, age: timedelta,
    alive: Callable[[int], bool] = pid_alive,
) -> list[int]:
    """Mark `abandoned` every running pass that is dead (see `abandon_reason`); their ids."""
    columns = PASSES.c
    rows = [RunningPass(r.id, r.host, r.pid, r.started_at, r.heartbeat_at)
            for r in connection.execute(
                select(columns.id, columns.host, columns.pid, columns.started_at,
                       columns.heartbeat_at)
                .where(columns.outcome == "running", columns.dry_run.is_(False)))]
    marked = []
    for row in rows:
        reason = abandon_reason(row, now, me, age, alive)
        if reason is None:
            continue
        done = connection.execute(
            update(PASSES).where(columns.id == row.id, columns.outcome == "running")
            .values(outcome="abandoned", finished_at=now, error=f"abandoned: {reason}"))
        if done.rowcount:
            log.warning("pass_abandoned", pass_id=row.id, host=row.host, pid=row.pid,
                        reason=reason)
            marked.append(row.id)
    return marked


def open_pass(
    connection: Connection, moment: datetime, started_at: datetime, *, dry_run: bool,
    trigger: str, runner: Runner,
) -> int:
    """Insert the pass's row, `running`, with who runs it and a first heartbeat."""
    result = connection.execute(
        insert(PASSES).values(started_at=started_at, as_of=moment, dry_run=dry_run,
                              trigger=trigger, outcome="running", counts={}, errors=[],
                              host=runner.host, pid=runner.pid, heartbeat_at=started_at)
        .returning(PASSES.c.id))
    return int(result.scalar_one())


def close_pass(
    connection: Connection, pass_id: int, outcome: str, finished: datetime, *,
    counts: dict[str, Any], errors: Sequence[dict[str, str]], error: str | None = None,
) -> None:
    connection.execute(
        update(PASSES).where(PASSES.c.id == pass_id).values(
            outcome=outcome, counts=counts, errors=list(errors[:1000]), finished_at=finished,
            error=None if error is None else error[:4000]))


def close_failed(engine: Engine, pass_id: int, error: str, finished: datetime) -> None:
    """Write `failed` on a pass that could not be closed when it failed (keeps its counts)."""
    with engine.begin() as connection:
        connection.execute(
            update(PASSES).where(PASSES.c.id == pass_id, PASSES.c.outcome == "running")
            .values(outcome="failed", finished_at=finished, error=error[:4000]))


class Heartbeat:
    """Renews a running pass's `heartbeat_at` from a daemon thread every `every`.

    A failed renewal (the database away) is skipped quietly: the pass itself meets the
    outage and reports it once."""

    def __init__(self, engine: Engine, pass_id: int, clock: Clock, every: timedelta) -> None:
        self.engine, self.pass_id, self.clock, self.every = engine, pass_id, clock, every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{pass_id}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.wait(self.every.total_seconds()):
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        update(PASSES).where(PASSES.c.id == self.pass_id,
                                             PASSES.c.outcome == "running")
                        .values(heartbeat_at=self.clock()))
            except Exception as error:  # the pass meets the outage itself and says so
                log.debug("heartbeat_failed", pass_id=self.pass_id, error=describe(error))
