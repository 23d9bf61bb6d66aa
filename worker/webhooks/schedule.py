"""Pure decisions: what one push attempt means and when the next one is due.

Nothing here reads the clock. `moment` is the pass moment (or the drain's), which judges
the retry schedule (worker.drain.schedule, shared with the mail) exactly as the mail's
does; `at` is the real time of the attempt, recorded only as `delivered_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.config.policy import Policy
from worker.drain.schedule import RetrySchedule, next_attempt

PENDING, RETRYING, DELIVERED, DEAD, GONE = "pending", "retrying", "delivered", "dead", "gone"
WAITING = (PENDING, RETRYING)


def retry_schedule(policy: Policy) -> RetrySchedule:
    """The schedule of `config/policy.toml`'s [webhooks] section."""
    section = policy.webhooks
    return RetrySchedule.from_minutes(section.retry_delays_minutes, jitter=section.jitter,
                                      lease=timedelta(minutes=section.lease_minutes),
                                      batch=section.batch,
                                      hold_after=section.hold_after_unrecorded_claims)


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
