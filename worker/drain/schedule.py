"""How a queue is drained and retried: one schedule for mail and webhooks (pure).

After the n-th failed attempt a row waits `delays[n-1]`, lengthened by up to `jitter` of
it (webhooks spread their retries after an outage; mail keeps exact delays); after the
last delay's attempt it is dead. `lease`: how long a claim holds when its process stops
renewing it (it renews every third of it while it runs); `batch`: rows claimed at a
time; `hold_after`: claims in a row whose outcome could not be recorded before a row is
held instead of sent again (worker.db.leases).

Nothing here reads the clock: `moment` is the pass moment (or the drain's).

Imports: the standard library only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# The mail's defaults, in the spirit of RFC 5321 §4.5.4.1: 5 min … 24 h, 10 attempts,
# spanning 51 h 50 min.
_DEFAULT_DELAYS = tuple(timedelta(minutes=m) for m in (5, 15, 30, 60, 120, 240, 480, 720, 1440))


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    delays: tuple[timedelta, ...] = _DEFAULT_DELAYS
    jitter: float = 0.0
    lease: timedelta = timedelta(minutes=15)
    batch: int = 200
    hold_after: int = 3

    def __post_init__(self) -> None:
        if not self.delays or any(d <= timedelta(0) for d in self.delays):
            raise ValueError("retry delays must be positive, and at least one")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")
        if self.batch < 1 or self.lease <= timedelta(0) or self.hold_after < 1:
            raise ValueError("batch, lease and hold_after must be positive")

    @classmethod
    def from_minutes(cls, delays: Iterable[float], **other: Any) -> RetrySchedule:
        return cls(delays=tuple(timedelta(minutes=m) for m in delays), **other)

    @property
    def span(self) -> timedelta:
        """The shortest time from the first attempt to the last (no jitter)."""
        return sum(self.delays, timedelta(0))


def spread(key: str) -> float:
    """A fraction in [0, 1) that depends only on `key`: jitter that spreads the retries
    of many rows after an outage, yet is the same on every run (tests, replays)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def next_attempt(attempts: int, moment: datetime, schedule: RetrySchedule,
                 key: str = "") -> datetime | None:
    """After `attempts` attempts (the last one just failed): when to try again, or None
    when retries have run out. The delay grows with each attempt; jitter only adds."""
    if attempts > len(schedule.delays):
        return None
    delay = schedule.delays[attempts - 1]
    if not schedule.jitter:
        return moment + delay
    return moment + delay * (1 + schedule.jitter * spread(f"{key}:{attempts}"))
