"""`start`: the pass and the outbox's drain on an APScheduler 3.11 schedule until
SIGTERM or SIGINT.

The schedule runs in the configured timezone (UTC by default: a wall-clock schedule in a
DST zone would skip or double a run). One pass at a time (`max_instances=1`); missed
runs are coalesced into one. Replicas coordinate through the database (row claims and
unique notice keys), never through APScheduler's job stores.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from worker.policy import Policy

log = structlog.get_logger("worker.service")


def serve(
    policy: Policy, run_once: Callable[[], object], deliver_once: Callable[[], object],
    now: Callable[[], datetime], push_once: Callable[[], object] | None = None,
) -> None:
    """Run `run_once` now and then every `schedule.pass_every_minutes`, and drain the outbox
    every `schedule.deliver_every_minutes` (retries and send windows open between passes),
    until a signal."""
    zone = ZoneInfo(policy.schedule.timezone)
    scheduler = BlockingScheduler(timezone=zone)
    scheduler.add_job(
        _guarded(run_once, "pass_failed"),
        IntervalTrigger(minutes=policy.schedule.pass_every_minutes, timezone=zone),
        id="pass", max_instances=1, coalesce=True, misfire_grace_time=300,
        next_run_time=now(),
    )
    scheduler.add_job(
        _guarded(deliver_once, "delivery_failed"),
        IntervalTrigger(minutes=policy.schedule.deliver_every_minutes, timezone=zone),
        id="deliver", max_instances=1, coalesce=True, misfire_grace_time=60,
    )

    if push_once is not None:  # webhooks: beside the mail drain, on the same rhythm
        scheduler.add_job(
            _guarded(push_once, "push_failed"),
            IntervalTrigger(minutes=policy.schedule.deliver_every_minutes, timezone=zone),
            id="push", max_instances=1, coalesce=True, misfire_grace_time=60,
        )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("service_stopping", signal=signal.Signals(signum).name)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("service_started", every_minutes=policy.schedule.pass_every_minutes,
             timezone=policy.schedule.timezone)
    scheduler.start()
    log.info("service_stopped")


def _guarded(job: Callable[[], object], event: str) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception:  # the service outlives one failed run; the next one retries
            log.exception(event)

    return run
