"""`start`: the pass and the outbox's drain on an APScheduler 3.11 schedule until
SIGTERM or SIGINT, within a bound.

The schedule runs in the configured timezone (UTC by default: a wall-clock schedule in a
DST zone would skip or double a run). One pass at a time (`max_instances=1`); missed
runs are coalesced into one. Replicas coordinate through the database (row claims and
unique notice keys), never through APScheduler's job stores.

Stopping (SIGTERM/SIGINT): the stop event is set; the scheduler is paused (no job
starts); the pass ends after its chunk in hand (`interrupted`) and the drain after the
messages in hand, writing every outcome and giving back its unused claims; then the
scheduler is shut down and `serve` returns 0. A watchdog holds the bound
(`shutdown.within_seconds`): past it, it logs the jobs it cuts and ends the process with
status 1. A second signal ends it at once.

The database going away: the first failure is logged once (`database_unavailable`);
a pass is retried with a growing delay (1 s … 30 s), each retry first
asking the database whether it answers; when it does, `database_available` says how long
it was away, a pass that could not be closed is written `failed`, and a pass runs at
once (health returns to 200 as soon as it succeeds). A database away when the service
starts is waited for the same way: the process serves its probes (/livez 200, /readyz
503) and honours a stop meanwhile, then brings the schema up to date (`Jobs.prepare`)
before its first pass. Anything else that stops the preparation (a migration refused)
ends the service with status 1. A pass that PostgreSQL rolled back to break a deadlock
(worker.db.failures) is no outage: it runs again a second later (`pass_retried`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from worker.config.policy import Policy
from worker.db.failures import is_conflict, is_outage
from worker.errors import describe
from worker.passes.run import PassFailed
from worker.support.instruments import record_database_error
from worker.support.outage import OUTAGES
from worker.support.stopping import Received

log = structlog.get_logger("worker.service.scheduler")
EXIT_CUT = 1
BACKOFF = (1, 2, 4, 8, 15, 30)  # seconds between retries while the database is away
CONFLICT_RETRY = timedelta(seconds=1)  # a pass rolled back by a deadlock runs again


@dataclass(frozen=True)
class Jobs:
    """What the service runs; each takes the stop event and looks at it often."""

    run_pass: Callable[[threading.Event], object]
    deliver: Callable[[threading.Event], object]
    probe: Callable[[], None]  # raises when the database does not answer
    close_failed: Callable[[int, str], None]  # writes `failed` on a pass left running
    # Once, before the first pass (the schema brought up to date, webhook endpoints
    # recorded): retried like a pass while the database is away.
    prepare: Callable[[], None] = lambda: None


def database_error(error: BaseException) -> BaseException | None:
    """The error of a database that does not answer (or broke the connection) in
    `error`'s chain of causes, or None when it is something else (a bug)."""
    return _in_causes(error, is_outage)


def conflict_error(error: BaseException) -> BaseException | None:
    """A deadlock or serialisation failure in `error`'s chain of causes, or None."""
    return _in_causes(error, is_conflict)


def _in_causes(
    error: BaseException, matches: Callable[[BaseException], bool]
) -> BaseException | None:
    seen: BaseException | None = error
    while seen is not None:
        if matches(seen):
            return seen
        seen = seen.__cause__
    return None


class DatabaseWatch:
    """Whether the database answered last time; logs each outage once, not per failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, error: BaseException) -> None:
        record_database_error()
        with self._lock:
            self.failures += 1
            if self._down_since is None:
                self._down_since = time.monotonic()
        OUTAGES.failed(describe(error))

    def answered(self) -> None:
        with self._lock:
            self._down_since, self.failures = None, 0
        OUTAGES.answered()

    def next_delay(self) -> timedelta:
        return timedelta(seconds=BACKOFF[min(max(self.failures - 1, 0), len(BACKOFF) - 1)])


class Running:
    """The names of the jobs running now, to wait for them to end."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._changed = threading.Condition()

    @contextmanager
    def job(self, name: str) -> Iterator[None]:
        with self._changed:
            self._names.append(name)
        try:
            yield
        finally:
            with self._changed:
                self._names.remove(name)
                self._changed.notify_all()

    def names(self) -> list[str]:
        with self._changed:
            return list(self._names)

    def wait_idle(self, seconds: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._names, timeout=seconds)


class Service:
    """The schedule, its jobs, the outage watch and the stop."""

    def __init__(
        self, policy: Policy, jobs: Jobs, now: Callable[[], datetime], stop: threading.Event
    ) -> None:
        self.policy, self.jobs, self.now, self.stop = policy, jobs, now, stop
        self.zone = ZoneInfo(policy.schedule.timezone)
        self.watch = DatabaseWatch()
        self.running = Running()
        self.unclosed: dict[int, str] = {}
        self._one_pass = threading.Lock()  # the schedule's pass and a retry never overlap
        self.prepared = threading.Event()  # `jobs.prepare` has succeeded
        self.status = 0
        self._cutting = threading.Lock()
        self._received = Received()  # noted by the signal handler, read by `serve`
        self.scheduler = BackgroundScheduler(
            timezone=self.zone, executors={"default": ThreadPoolExecutor(2)})

    def serve(self) -> int:
        schedule = self.policy.schedule
        self.scheduler.add_job(
            self._pass_job, IntervalTrigger(minutes=schedule.pass_every_minutes,
                                            timezone=self.zone),
            id="pass", max_instances=1, coalesce=True, misfire_grace_time=300,
            next_run_time=self.now())
        self.scheduler.add_job(
            self._deliver_job, IntervalTrigger(minutes=schedule.deliver_every_minutes,
                                               timezone=self.zone),
            id="deliver", max_instances=1, coalesce=True, misfire_grace_time=60)
        self._install_signals()
        self.scheduler.start()
        log.info("service_started", every_minutes=schedule.pass_every_minutes,
                 timezone=schedule.timezone, pid=os.getpid())
        while self._received.first is None and not self.stop.wait(0.2):
            pass
        self.stop.set()
        log.info("service_stopping", signal=self._received.first,
                 running=self.running.names())
        return self._shut_down() or self.status

    def _install_signals(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            # A note and nothing else: the handler runs on the main thread between two
            # bytecodes, possibly inside a log call or `stop.wait` holding a lock that
            # logging or `stop.set` would wait on for ever (the watchdog logging behind
            # it), or inside itself when two signals come together (worker.support.stopping).
            # `serve` sees the note within 0.2 s and does the rest.
            if self._received.note(signum) > 1:  # a second signal: at once, in raw
                # bytes, on a line of its own even if the main thread was half-way through one
                os.write(2, b'\n{"event": "shutdown_forced", "level": "warning"}\n')
                os._exit(EXIT_CUT)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _shut_down(self) -> int:
        bound = float(self.policy.shutdown.within_seconds)
        began = time.monotonic()
        watchdog = threading.Timer(bound, self._cut, args=(bound,))
        watchdog.daemon = True
        watchdog.start()
        self.scheduler.pause()  # nothing new starts; the jobs in hand see the stop
        # In short waits: a signal that lands on another thread runs its handler only
        # when the main thread wakes, and a second signal must end the process at once.
        while not self.running.wait_idle(0.2):
            if time.monotonic() - began >= bound:
                self._cut(bound)  # whichever of this and the watchdog comes first
        self.scheduler.shutdown(wait=False)
        watchdog.cancel()
        log.info("service_stopped", seconds=round(time.monotonic() - began, 2))
        return 0

    def _cut(self, bound: float) -> None:
        self._cutting.acquire()  # never released: the process ends; one cut, logged once
        log.error("shutdown_cut", within_seconds=bound, running=self.running.names(),
                  note="claims left to their leases; a running pass is marked abandoned "
                       "by a later pass")
        os._exit(EXIT_CUT)

    def _pass_job(self) -> None:
        if self.stop.is_set() or not self._one_pass.acquire(blocking=False):
            return
        try:
            self._one_pass_job()
        finally:
            self._one_pass.release()

    def _one_pass_job(self) -> None:
        with self.running.job("pass"):
            if self.watch.down and not self._database_answers():
                return
            if not self.prepared.is_set() and not self._prepare():
                return
            try:
                self._close_unclosed()
                self.jobs.run_pass(self.stop)
            except Exception as error:
                self._failed("pass", error)
            else:
                self.watch.answered()

    def _prepare(self) -> bool:
        try:
            self.jobs.prepare()
        except Exception as error:
            if database_error(error) is None and conflict_error(error) is None:
                # neither an outage nor a deadlock: waiting will not cure it
                log.exception("start_failed")
                self.status = EXIT_CUT
                self.stop.set()
            else:
                self._failed("start", error)
            return False
        self.prepared.set()
        return True

    def _deliver_job(self) -> None:
        if self.stop.is_set() or self.watch.down or not self.prepared.is_set():
            return  # while the database is away, the pass job's retries watch it
        with self.running.job("deliver"):
            try:
                self.jobs.deliver(self.stop)
            except Exception as error:
                self._failed("delivery", error)

    def _database_answers(self) -> bool:
        try:
            self.jobs.probe()
        except Exception as error:
            self.watch.failed(error)
            self._retry_pass_later()
            return False
        self.watch.answered()
        return True

    def _close_unclosed(self) -> None:
        for pass_id, error in list(self.unclosed.items()):
            self.jobs.close_failed(pass_id, error)
            log.info("pass_closed_late", pass_id=pass_id, outcome="failed", error=error)
            del self.unclosed[pass_id]

    def _failed(self, what: str, error: Exception) -> None:
        if isinstance(error, PassFailed) and not error.closed:
            self.unclosed[error.pass_id] = error.error
        cause = database_error(error)
        conflict = conflict_error(error)
        if conflict is not None:  # the database is fine: the pass runs again at once
            log.warning(f"{what}_retried", reason=describe(conflict))
            self._retry_pass_later(CONFLICT_RETRY)
        elif cause is not None:
            self.watch.failed(cause)
            self._retry_pass_later()
        elif not isinstance(error, PassFailed):  # a failed pass logged itself
            log.exception(f"{what}_failed")

    def _retry_pass_later(self, delay: timedelta | None = None) -> None:
        if self.stop.is_set():
            return
        at = self.now() + (self.watch.next_delay() if delay is None else delay)
        try:
            self.scheduler.add_job(self._pass_job, DateTrigger(at, timezone=self.zone),
                                   id="pass-retry", replace_existing=True,
                                   misfire_grace_time=None)
        except Exception:  # the scheduler is shutting down
            log.debug("retry_not_scheduled")


def serve(
    policy: Policy, jobs: Jobs, now: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> int:
    """Run the service until a signal (see the module docstring); the exit status."""
    return Service(policy, jobs, now, stop or threading.Event()).serve()
