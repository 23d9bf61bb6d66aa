"""Delivery decisions: pure functions of a notice, the pass moment and the policy.

Nothing here reads the clock, the database or the network; the mail queue
(`worker.mail.drain`) carries the decisions out.

- `window_decision(notice, moment, policy)`: send now, wait until the window opens in
  the recipient's timezone, or skip (a reseller digest that can no longer go out on its
  own local date). Code mail ignores the window.
- `retry_decision(attempts, moment, retry)`: retry at T + the next delay, or give up.
- `settle(notice, outcome, moment, at, retry)`: the row's new delivery state after one
  attempt, per recipient. A recipient the server accepted is never sent to again; one
  refused for now is retried alone; one refused for good is recorded and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.config.policy import Policy
from worker.drain.schedule import RetrySchedule
from worker.mail.transports.base import Outcome, Verdict
from worker.rules.calendar import local_time_of_day
from worker.rules.notices import IGNORES_SEND_WINDOW

WAITING = ("queued", "retrying")
DIGEST = "reseller_digest"

# Per-recipient states kept in `recipient_results`; all but `retrying` are final.
# `suppressed`: the address was suppressed when the notice went out (never sent to it);
# `bounced`: sent, then a report said the address failed for good (worker.mail.bounces).
R_SENT, R_FAILED, R_DEAD, R_RETRYING = "sent", "failed", "dead", "retrying"
R_SUPPRESSED, R_BOUNCED = "suppressed", "bounced"
FINAL = frozenset({R_SENT, R_FAILED, R_DEAD, R_SUPPRESSED, R_BOUNCED})


# --- decisions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed notification: what deciding and sending it needs."""

    id: int
    kind: str
    audience: str
    occasion_date: date
    timezone: str
    recipients: tuple[str, ...]
    attempts: int = 0
    last_error: str | None = None
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sender: str | None = None
    message_bytes: bytes | None = None
    message_id: str | None = None
    due_since: datetime | None = None  # the later of its creation and `not_before`
    ref: str = ""
    reseller_id: str | None = None
    bounce_token: str | None = None  # names the notice in its envelope senders

    @property
    def pending(self) -> tuple[str, ...]:
        """Recipients still to try: no final answer yet."""
        return tuple(a for a in self.recipients
                     if self.results.get(a, {}).get("status") not in FINAL)

    @property
    def key(self) -> str:
        return f"{self.id:08d}-{self.kind}-{self.audience}"


@dataclass(frozen=True, slots=True)
class SendNow:
    pass


@dataclass(frozen=True, slots=True)
class WaitUntil:
    at: datetime


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


WindowDecision = SendNow | WaitUntil | Skip


def window_decision(notice: Due, moment: datetime, policy: Policy) -> WindowDecision:
    """May `notice` go out at `moment`?

    - Code mail (`IGNORES_SEND_WINDOW`) goes at once.
    - Otherwise it goes inside the send window [start, end) of the wall clock in the
      notice's timezone (the customer's, or the reseller's for reseller mail); outside
      it, it waits for the next start. start > end wraps midnight; start == end is all
      day. On a DST change the start is the instant the wall clock shows it (a start
      inside a spring gap is shifted forward by the gap).
    - A reseller digest goes only on its own local date: one that cannot go out before
      that date ends (past it, or past the window's last opening) is skipped.
    An unknown timezone is read as UTC.
    """
    if notice.kind in IGNORES_SEND_WINDOW:
        return SendNow()
    zone = _zone(notice.timezone)
    local = moment.astimezone(zone)
    decision = _window(local, policy.send_window.start, policy.send_window.end, zone)
    if notice.kind != DIGEST:
        return decision
    day = decision.at.astimezone(zone).date() if isinstance(decision, WaitUntil) else local.date()
    if day > notice.occasion_date:
        return Skip(f"the digest of {notice.occasion_date.isoformat()} was not delivered on "
                    f"that local date ({zone.key})")
    return decision


def _window(local: datetime, start: time, end: time, zone: ZoneInfo) -> SendNow | WaitUntil:
    now = local.time().replace(tzinfo=None)
    if start == end:
        return SendNow()
    inside = start <= now < end if start < end else (now >= start or now < end)
    if inside:
        return SendNow()
    day = local.date()
    if start < end and now >= end:
        day += timedelta(days=1)
    opening = local_time_of_day(day, start, zone)
    return WaitUntil(opening) if opening > local else SendNow()


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    attempts: int


def retry_decision(attempts: int, moment: datetime, retry: RetrySchedule) -> Retry | GiveUp:
    """After `attempts` attempts (the last one just failed for now): when to try again."""
    if attempts <= len(retry.delays):
        return Retry(moment + retry.delays[attempts - 1])
    return GiveUp(attempts)


@dataclass(frozen=True, slots=True)
class Settlement:
    """A notification's delivery state after one attempt: the row's new values."""

    id: int
    status: str
    attempts: int
    last_error: str | None
    results: dict[str, dict[str, Any]]
    not_before: datetime | None = None
    sent_at: datetime | None = None
    # What the notice's event tells besides the outcome (kind, ref, audience, recipients,
    # message_id, reseller_id), carried from the claim so the writer need not read it back.
    facts: Mapping[str, Any] | None = field(default=None, compare=False)
    # A signed message to retry: kept, so that every attempt sends the very same bytes.
    sealed: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def final(self) -> bool:
        return self.status != "retrying"

    @property
    def refused(self) -> int:
        return sum(1 for r in self.results.values() if r["status"] in (R_FAILED, R_DEAD))

    @property
    def suppressed(self) -> int:
        return sum(1 for r in self.results.values() if r["status"] == R_SUPPRESSED)


_STATE_OF = {Verdict.ACCEPTED: R_SENT, Verdict.PERMANENT: R_FAILED,
             Verdict.TRANSIENT: R_RETRYING}


def settle(
    notice: Due, outcome: Outcome, moment: datetime, at: datetime, retry: RetrySchedule
) -> Settlement:
    """Apply one attempt's replies (server time `at`, pass moment `moment`).

    Status: `retrying` while a recipient waits for another attempt; then `sent` if the
    server accepted it for anyone (the others are recorded as refused), else `dead` if
    retries ran out for someone, else `cancelled` if every recipient was suppressed,
    else `failed`. `last_error` keeps the latest refusal.
    """
    results = {a: dict(r) for a, r in notice.results.items()}
    for reply in outcome.replies:
        results[reply.address] = {"status": _STATE_OF[reply.verdict], "code": reply.code,
                                  "reply": reply.text[:500], "at": at.isoformat()}
    attempts = notice.attempts + 1
    last_error = describe_refusals(outcome) or notice.last_error
    waiting = [a for a in notice.recipients if results.get(a, {}).get("status") not in FINAL]
    base = Settlement(notice.id, "retrying", attempts, last_error, results)
    if waiting:
        decision = retry_decision(attempts, moment, retry)
        if isinstance(decision, Retry):
            return replace(base, not_before=decision.at)
        for address in waiting:
            results[address] = {**results.get(address, {}), "status": R_DEAD}
        last_error = f"gave up after {attempts} attempts; last: {last_error}"
    return _final(replace(base, last_error=last_error))


def _final(base: Settlement) -> Settlement:
    states = [r["status"] for r in base.results.values()]
    if R_SENT in states:
        sent_at = max(datetime.fromisoformat(r["at"]) for r in base.results.values()
                      if r["status"] == R_SENT)
        return replace(base, status="sent", sent_at=sent_at)
    if R_DEAD in states:
        return replace(base, status="dead")
    if states and all(state == R_SUPPRESSED for state in states):
        return replace(base, status="cancelled", last_error="every recipient is suppressed")
    return replace(base, status="failed")


def describe_refusals(outcome: Outcome) -> str | None:
    """"451 4.3.0 try later (a@x, b@y); 550 5.1.1 no such user (c@z)", or None."""
    grouped: dict[tuple[int | None, str], list[str]] = {}
    for reply in outcome.replies:
        if reply.verdict is not Verdict.ACCEPTED:
            grouped.setdefault((reply.code, reply.text), []).append(reply.address)
    if not grouped:
        return None
    parts = [f"{'' if code is None else f'{code} '}{text} ({', '.join(addresses)})"
             for (code, text), addresses in grouped.items()]
    return "; ".join(parts)[:2000]
