"""Pure decisions: what one push attempt means and when the next one is due.

Nothing here reads the clock. `moment` is the pass moment (or the drain's), which judges
the retry schedule exactly as the mail outbox does; `at` is the real time of the
attempt, recorded only as `delivered_at`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.config.policy import Policy

PENDING, RETRYING, DELIVERED, DEAD, GONE = "pending", "retrying", "delivered", "dead", "gone"
WAITING = (PENDING, RETRYING)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """After the n-th failed attempt a delivery waits `delays[n-1]`, lengthened by up to
    `jitter` of it; after the last delay's attempt it is dead."""

    delays: tuple[timedelta, ...]
    jitter: float = 0.2
    lease: timedelta = timedelta(minutes=5)
    batch: int = 200

    def __post_init__(self) -> None:
        if not self.delays or any(d <= timedelta(0) for d in self.delays):
            raise ValueError("retry delays must be positive, and at least one")
        if not 0 <= self.jitter <= 1 or self.batch < 1 or self.lease <= timedelta(0):
            raise ValueError("jitter in [0, 1], batch and lease positive")

    @classmethod
    def from_minutes(cls, delays: Iterable[float], **other: Any) -> RetrySchedule:
        return cls(delays=tuple(timedelta(minutes=m) for m in delays), **other)

    @property
    def span(self) -> timedelta:
        """The shortest time from the first attempt to the last (no jitter)."""
        return sum(self.delays, timedelta(0))


def retry_schedule(policy: Policy) -> RetrySchedule:
    """The schedule of `config/policy.toml`'s [webhooks] section."""
    section = policy.webhooks
    return RetrySchedule.from_minutes(section.retry_delays_minutes, jitter=section.jitter,
                                      lease=timedelta(minutes=section.lease_minutes),
                                      batch=section.batch)


def spread(key: str) -> float:
    """A fraction in [0, 1) that depends only on `key`: jitter that spreads the retries
    of many events after an outage, yet is the same on every run (tests, replays)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def next_attempt(attempts: int, moment: datetime, schedule: RetrySchedule,
                 key: str) -> datetime | None:
    """After `attempts` attempts (the last one just failed): when to try again, or None
    when retries have run out. The delay grows with each attempt; jitter only adds."""
    if attempts > len(schedule.delays):
        return None
    delay = schedule.delays[attempts - 1]
    return moment + delay * (1 + schedule.jitter * spread(f"{key}:{attempts}"))


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: an HTTP status, or an error (timeout, refused connection)."""

    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410

    def describe(self) -> str:
        if self.status_code is not None:
            return f"HTTP {self.status_code}" + (f": {self.error}" if self.error else "")
        return self.error or "no answer"


@dataclass(frozen=True, slots=True)
class Settlement:
    """A delivery row's new values after one attempt."""

    id: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None = None


def settle(delivery_id: int, attempts_before: int, key: str, answer: Answer,
           moment: datetime, at: datetime, schedule: RetrySchedule) -> Settlement:
    """2xx: delivered. 410: gone (the endpoint is disabled by the caller). Anything
    else: retrying at the next delay after `moment`, or dead when they have run out."""
    attempts = attempts_before + 1
    error = None if answer.delivered else answer.describe()[:2000]
    if answer.delivered:
        return Settlement(delivery_id, DELIVERED, attempts, None, answer.status_code, None, at)
    if answer.gone:
        return Settlement(delivery_id, GONE, attempts, None, answer.status_code, error)
    retry_at = next_attempt(attempts, moment, schedule, key)
    if retry_at is None:
        return Settlement(delivery_id, DEAD, attempts, None, answer.status_code,
                          f"gave up after {attempts} attempts; last: {error}"[:2000])
    return Settlement(delivery_id, RETRYING, attempts, retry_at, answer.status_code, error)
