"""The outbox: claim due notifications, hand them to a mailer, record what happened.

Time. The pass moment T (`moment`, `--as-of`) judges the send window and the retry
schedule; the real time (`clock()`) is recorded only as `sent_at`, in the Date header
and in the claim's lease. Nothing here reads the wall clock itself.

Decisions are values, made by pure functions and carried out by `Drain`:

- `window_decision(notice, moment, policy)`: send now, wait until the window opens in
  the recipient's timezone, or skip (a reseller digest that can no longer go out on its
  own local date). Code mail ignores the window.
- `retry_decision(attempts, moment, retry)`: retry at T + the next delay, or give up.
- `settle(notice, outcome, moment, at, retry)`: the row's new delivery state after one
  attempt, per recipient. A recipient the server accepted is never sent to again; one
  refused for now is retried alone; one refused for good is recorded and dropped.

Claims. A batch is claimed in one statement: rows waiting (`queued`, `retrying`), due
(`not_before` empty or at most T) and not leased by another process get this drain's
token and a lease (PostgreSQL picks them with FOR UPDATE SKIP LOCKED; SQLite's
BEGIN IMMEDIATE serialises the conditional UPDATE). Only the rows the statement
returned are sent, so two processes never send one notice at once; a process that dies
leaves its lease to expire. A notice is marked `sent` only after the server accepted it,
in the transaction that follows (every `FLUSH` outcomes).

Messages are built once (`build_for`: `worker.render` and `worker.messages`), kept in
`message_bytes` while the notice waits, and stamped with their Date at each hand-over;
the Message-ID never changes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import Connection, Engine, Row, and_, bindparam, or_, select, update

from worker.calendar import local_time_of_day
from worker.db.schema import metadata
from worker.events import record_final_notices
from worker.mailer import Mailer, Outcome, Outgoing, Verdict, open_mailer
from worker.messages import UnsafeHeader, message_bytes, message_id_for
from worker.notices import IGNORES_SEND_WINDOW
from worker.policy import Policy
from worker.render import render_notification
from worker.settings import Settings

log = structlog.get_logger("worker.outbox")
NOTIFICATIONS = metadata.tables["notifications"]
WAITING = ("queued", "retrying")
DIGEST = "reseller_digest"
FLUSH = 50  # outcomes written per transaction: also the most a crash can send twice
Clock = Callable[[], datetime]
Builder = Callable[[Row[Any]], tuple[bytes, str]]

# Per-recipient states kept in `recipient_results`; the first three are final.
R_SENT, R_FAILED, R_DEAD, R_RETRYING = "sent", "failed", "dead", "retrying"
FINAL = frozenset({R_SENT, R_FAILED, R_DEAD})


# --- policy ---------------------------------------------------------------------------

_DEFAULT_DELAYS = tuple(timedelta(minutes=m) for m in (5, 15, 30, 60, 120, 240, 480, 720, 1440))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried (defaults in the spirit of RFC 5321 §4.5.4.1).

    After the n-th failed attempt the notice waits `delays[n-1]`; after the last delay's
    attempt it is dead. The defaults (5 min … 24 h, 10 attempts) span 51 h 50 min.
    `lease`: how long a claim holds when its process stops renewing it (it renews every
    third of it while it runs); `batch`: notices claimed at a time.
    """

    delays: tuple[timedelta, ...] = _DEFAULT_DELAYS
    lease: timedelta = timedelta(minutes=15)
    batch: int = 200

    def __post_init__(self) -> None:
        if not self.delays or any(d <= timedelta(0) for d in self.delays):
            raise ValueError("retry delays must be positive, and at least one")
        if self.batch < 1 or self.lease <= timedelta(0):
            raise ValueError("batch and lease must be positive")

    @classmethod
    def from_minutes(cls, delays: Iterable[float], **other: Any) -> RetryPolicy:
        return cls(delays=tuple(timedelta(minutes=m) for m in delays), **other)

    @property
    def span(self) -> timedelta:
        return sum(self.delays, timedelta(0))


def retry_policy(policy: Policy) -> RetryPolicy:
    """The retry schedule of `config/policy.toml`'s [delivery] section."""
    settings = policy.delivery
    return RetryPolicy.from_minutes(settings.retry_delays_minutes,
                                    lease=timedelta(minutes=settings.lease_minutes),
                                    batch=settings.batch)


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


def retry_decision(attempts: int, moment: datetime, retry: RetryPolicy) -> Retry | GiveUp:
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

    @property
    def final(self) -> bool:
        return self.status != "retrying"

    @property
    def refused(self) -> int:
        return sum(1 for r in self.results.values() if r["status"] in (R_FAILED, R_DEAD))


_STATE_OF = {Verdict.ACCEPTED: R_SENT, Verdict.PERMANENT: R_FAILED,
             Verdict.TRANSIENT: R_RETRYING}


def settle(
    notice: Due, outcome: Outcome, moment: datetime, at: datetime, retry: RetryPolicy
) -> Settlement:
    """Apply one attempt's replies (server time `at`, pass moment `moment`).

    Status: `retrying` while a recipient waits for another attempt; then `sent` if the
    server accepted it for anyone (the others are recorded as refused), else `dead` if
    retries ran out for someone, else `failed`. `last_error` keeps the latest refusal.
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
    return replace(base, status="dead" if R_DEAD in states else "failed")


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


# --- messages -------------------------------------------------------------------------


def build_for(row: Row[Any]) -> tuple[bytes, str]:
    """The message of one notification row, without a Date header, and its Message-ID.

    The Message-ID is the row's own if it has one, else minted from its id, salted with
    its once-only key so that two databases reusing ids never mint the same one."""
    mapping: dict[str, Any] = dict(row._mapping)
    message_id = mapping["message_id"] or message_id_for(
        mapping["id"], str(mapping["payload"]["reseller"]["email"]),
        salt="|".join(str(mapping[k]) for k in ("kind", "ref", "occasion", "audience")))
    rendered = render_notification(mapping)
    return message_bytes(mapping, rendered, message_id=message_id, date=None), message_id


_DATE_LINE = re.compile(rb"^date:[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def stamp_date(data: bytes, when: datetime) -> bytes:
    """`data` with a Date header for `when` (replacing the one it had, if any)."""
    blank = data.find(b"\r\n\r\n")
    if blank >= 0:
        head_length, newline = blank + 2, b"\r\n"
    else:
        blank = data.find(b"\n\n")
        head_length, newline = (blank + 1 if blank >= 0 else len(data)), b"\n"
    line = b"Date: " + format_datetime(when.astimezone(UTC)).encode("ascii") + newline
    head = data[:head_length]
    if _DATE_LINE.search(head):
        return _DATE_LINE.sub(lambda _: line, head, count=1) + data[head_length:]
    return line + data


# --- the database ---------------------------------------------------------------------

_CLAIMED = (
    NOTIFICATIONS.c.id, NOTIFICATIONS.c.kind, NOTIFICATIONS.c.audience,
    NOTIFICATIONS.c.occasion_date, NOTIFICATIONS.c.timezone, NOTIFICATIONS.c.recipients,
    NOTIFICATIONS.c.attempts, NOTIFICATIONS.c.last_error, NOTIFICATIONS.c.recipient_results,
    NOTIFICATIONS.c.message_bytes, NOTIFICATIONS.c.message_id,
    NOTIFICATIONS.c.payload[("reseller", "email")].as_string().label("sender"),
)


def _due_condition(moment: datetime, now: datetime) -> Any:
    columns = NOTIFICATIONS.c
    return and_(columns.status.in_(WAITING),
                or_(columns.not_before.is_(None), columns.not_before <= moment),
                or_(columns.claimed_until.is_(None), columns.claimed_until <= now))


def claim(
    connection: Connection, moment: datetime, now: datetime, token: str, lease: timedelta,
    limit: int,
) -> list[Due]:
    """Lease up to `limit` due notifications to `token` (see the module docstring)."""
    due = _due_condition(moment, now)
    columns = NOTIFICATIONS.c
    pick = (select(columns.id).where(due).order_by(columns.id).limit(limit)
            .with_for_update(skip_locked=True))
    statement = (update(NOTIFICATIONS).where(columns.id.in_(pick.scalar_subquery()), due)
                 .values(claim_token=token, claimed_until=now + lease).returning(*_CLAIMED))
    rows = connection.execute(statement).all()
    return sorted((_due_of(row) for row in rows), key=lambda notice: notice.id)


def _due_of(row: Row[Any]) -> Due:
    return Due(id=row.id, kind=row.kind, audience=row.audience,
               occasion_date=row.occasion_date, timezone=row.timezone,
               recipients=tuple(row.recipients or ()), attempts=row.attempts,
               last_error=row.last_error, results=row.recipient_results or {},
               sender=row.sender, message_bytes=row.message_bytes,
               message_id=row.message_id)


def waiting_rows(connection: Connection, moment: datetime) -> list[Due]:
    """Due notifications, read without claiming (for dry runs)."""
    query = select(*_CLAIMED).where(_due_condition(moment, moment)).order_by(
        NOTIFICATIONS.c.id)
    return [_due_of(row) for row in connection.execute(query)]


def _still_waiting() -> Any:
    """`status IN ('queued', 'retrying')`, in a form executemany accepts."""
    return or_(*(NOTIFICATIONS.c.status == status for status in WAITING))


def _released(**values: Any) -> dict[str, Any]:
    return {**values, "claim_token": None, "claimed_until": None}


def write_waits(connection: Connection, waits: Sequence[tuple[int, datetime]]) -> None:
    if waits:
        statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
                     .values(_released(not_before=bindparam("b_at"))))
        connection.execute(statement, [{"b_id": i, "b_at": at} for i, at in waits])


def write_skips(connection: Connection, skips: Sequence[tuple[int, str]]) -> None:
    if skips:
        statement = (update(NOTIFICATIONS)
                     .where(NOTIFICATIONS.c.id == bindparam("b_id"), _still_waiting())
                     .values(_released(status="cancelled", last_error=bindparam("b_reason"),
                                       message_bytes=None)))
        connection.execute(statement, [{"b_id": i, "b_reason": r} for i, r in skips])
        record_final_notices(connection, {i: "cancelled" for i, _ in skips})


def write_built(connection: Connection, built: Mapping[int, tuple[bytes, str]]) -> None:
    """Keep built messages, so a retry or another process sends the very same bytes."""
    if built:
        statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
                     .values(message_bytes=bindparam("b_bytes"), message_id=bindparam("b_mid")))
        connection.execute(statement, [{"b_id": i, "b_bytes": data, "b_mid": mid}
                                       for i, (data, mid) in built.items()])


def write_settlements(connection: Connection, settlements: Sequence[Settlement]) -> None:
    """Record outcomes and release the leases. `sent` is written whatever happened to
    the row meanwhile (it is a fact); other outcomes only to rows still waiting, so a
    notice cancelled while in flight stays cancelled. Each final state written gets its
    event in this transaction (worker.events)."""
    columns = NOTIFICATIONS.c
    values = _released(
        status=bindparam("b_status"), attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"), recipient_results=bindparam("b_results"),
        not_before=bindparam("b_not_before"), sent_at=bindparam("b_sent_at"),
    )
    sent = [s for s in settlements if s.status == "sent"]
    other = [s for s in settlements if s.status != "sent"]
    if sent:
        statement = update(NOTIFICATIONS).where(columns.id == bindparam("b_id"))
        connection.execute(statement.values({**values, "message_bytes": None}),
                           [_params(s) for s in sent])
    for final in (True, False):
        group = [_params(s) for s in other if s.final is final]
        if group:
            statement = update(NOTIFICATIONS).where(columns.id == bindparam("b_id"),
                                                    _still_waiting())
            extra = {"message_bytes": None} if final else {}
            connection.execute(statement.values({**values, **extra}), group)
    # One event per notice now in a final state (none where the update did not apply).
    record_final_notices(connection, {s.id: s.status for s in settlements if s.final})


def _params(settlement: Settlement) -> dict[str, Any]:
    return {"b_id": settlement.id, "b_status": settlement.status,
            "b_attempts": settlement.attempts, "b_error": settlement.last_error,
            "b_results": settlement.results, "b_not_before": settlement.not_before,
            "b_sent_at": settlement.sent_at}


@dataclass(frozen=True, slots=True)
class BuildFailure:
    """Why a message could not be built; `permanent` when the row's own data is at
    fault (an unsafe address: retrying the same row cannot help), else a template or
    code fault that a fix may cure before retries run out."""

    reason: str
    permanent: bool


def build_messages(
    connection: Connection, ids: Sequence[int], build: Builder = build_for
) -> tuple[dict[int, tuple[bytes, str]], dict[int, BuildFailure]]:
    """Build the messages of notifications `ids` and keep them in the database.

    Returns what was built ({id: (bytes, Message-ID)}) and what could not be, and why:
    one broken notice never stops the others. A pass may call this right after
    queueing (building once, at queue time); the drain calls it for whatever it claims
    without a message."""
    built: dict[int, tuple[bytes, str]] = {}
    failed: dict[int, BuildFailure] = {}
    if not ids:
        return built, failed
    for row in connection.execute(select(NOTIFICATIONS).where(NOTIFICATIONS.c.id.in_(ids))):
        try:
            built[row.id] = build(row)
        except Exception as error:  # one broken notice never stops the others
            log.warning("message_build_failed", id=row.id, error=repr(error))
            failed[row.id] = BuildFailure(
                f"cannot build the message: {type(error).__name__}: {error}",
                isinstance(error, UnsafeHeader))
    write_built(connection, built)
    return built, failed


def extend_lease(connection: Connection, token: str, until: datetime) -> int:
    """Keep the notices `token` still holds until `until` (a long, slow drain)."""
    statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.claim_token == token)
                 .values(claimed_until=until))
    return int(connection.execute(statement).rowcount or 0)


def release(connection: Connection, token: str) -> int:
    """Give back every lease of `token` still held (a drain interrupted half-way)."""
    statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.claim_token == token)
                 .values(claim_token=None, claimed_until=None))
    return int(connection.execute(statement).rowcount or 0)


# --- the drain ------------------------------------------------------------------------


@dataclass
class DeliveryCounts:
    """What one drain did, for the pass summary (`as_dict`) and operators."""

    transport: str
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0  # digests skipped
    deferred: int = 0  # waiting for the send window
    refused_recipients: int = 0  # of notices otherwise sent
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        counts = {"sent": self.sent, "retrying": self.retrying, "failed": self.failed,
                  "dead": self.dead, "cancelled": self.cancelled, "deferred": self.deferred,
                  "refused_recipients": self.refused_recipients}
        return {key: value for key, value in counts.items() if value}

    def add(self, settlement: Settlement) -> None:
        setattr(self, settlement.status, getattr(self, settlement.status) + 1)
        if settlement.status == "sent":
            self.refused_recipients += settlement.refused


class Drain:
    """Claims, sends and records until nothing is due at `moment` (or `limit` is hit)."""

    def __init__(
        self, engine: Engine, mailer: Mailer, policy: Policy, moment: datetime, *,
        clock: Clock, retry: RetryPolicy, build: Builder = build_for,
        limit: int | None = None,
    ) -> None:
        self.engine, self.mailer, self.policy = engine, mailer, policy
        self.moment, self.clock, self.retry, self.build = moment, clock, retry, build
        self.limit = limit
        self.token = uuid.uuid4().hex
        self.counts = DeliveryCounts(transport=mailer.description)
        self._unwritten: list[Settlement] = []
        self._handled = 0

    async def run(self) -> DeliveryCounts:
        heartbeat = asyncio.create_task(self._keep_lease())
        try:
            while self.limit is None or self._handled < self.limit:
                batch = self._claim()
                if not batch:
                    break
                self._handled += len(batch)
                await self._send_all(self._prepare(batch))
                self._flush()
        finally:
            heartbeat.cancel()
            await self.mailer.close()
            self._flush()
            with self.engine.begin() as connection:
                release(connection, self.token)
        log.info("delivery_finished", transport=self.counts.transport,
                 **self.counts.as_dict(), errors=len(self.counts.errors))
        return self.counts

    async def _keep_lease(self) -> None:
        """Extend the lease every third of it: a batch slowed down by a server that
        takes its time (timeouts of minutes) is never claimed by another process."""
        while True:
            await asyncio.sleep(self.retry.lease.total_seconds() / 3)
            with self.engine.begin() as connection:
                extend_lease(connection, self.token, self.clock() + self.retry.lease)

    def _claim(self) -> list[Due]:
        size = self.retry.batch if self.limit is None else min(
            self.retry.batch, self.limit - self._handled)
        with self.engine.begin() as connection:
            return claim(connection, self.moment, self.clock(), self.token,
                         self.retry.lease, size)

    def _prepare(self, batch: list[Due]) -> list[Due]:
        """Window decisions and message building; returns what goes out now."""
        ready, waits, skips = [], [], []
        for notice in batch:
            decision = window_decision(notice, self.moment, self.policy)
            if isinstance(decision, WaitUntil):
                waits.append((notice.id, decision.at))
            elif isinstance(decision, Skip):
                skips.append((notice.id, decision.reason))
                log.info("digest_skipped", id=notice.id, reason=decision.reason)
            else:
                ready.append(notice)
        self.counts.deferred += len(waits)
        self.counts.cancelled += len(skips)
        with self.engine.begin() as connection:
            write_waits(connection, waits)
            ready = self._built(connection, ready)
            write_skips(connection, skips)  # last: its events take the feed's lock
            return ready

    def _built(self, connection: Connection, notices: list[Due]) -> list[Due]:
        missing = [n.id for n in notices if n.message_bytes is None or n.message_id is None]
        built, failed = build_messages(connection, missing, self.build)
        ready = []
        for notice in notices:
            if notice.id in built:
                data, message_id = built[notice.id]
                ready.append(replace(notice, message_bytes=data, message_id=message_id))
            elif notice.id in failed:
                failure = failed[notice.id]
                self._error(notice.id, failure.reason)
                verdict = Verdict.PERMANENT if failure.permanent else Verdict.TRANSIENT
                self._settled(notice, Outcome.for_all(notice.pending, verdict, None,
                                                      failure.reason))
            else:
                ready.append(notice)
        return ready

    async def _send_all(self, notices: list[Due]) -> None:
        queue = iter(notices)

        async def worker() -> None:
            for notice in queue:
                self._settled(notice, await self._attempt(notice))

        workers = max(1, min(self.mailer.concurrency, len(notices)))
        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _attempt(self, notice: Due) -> Outcome:
        pending = notice.pending
        if not pending:
            return Outcome(())
        if not notice.sender:
            self._error(notice.id, "no sender address in the notification's payload")
            return Outcome.for_all(pending, Verdict.TRANSIENT, None, "no sender address")
        data = stamp_date(notice.message_bytes or b"", self.clock())
        outgoing = Outgoing(notice.key, notice.sender, pending, data, notice.message_id or "")
        try:
            return await self.mailer.send(outgoing)
        except Exception as error:  # a mailer bug must not lose the notice: retry it
            log.exception("mailer_failed", id=notice.id)
            self._error(notice.id, f"mailer error: {type(error).__name__}: {error}")
            return Outcome.for_all(pending, Verdict.TRANSIENT, None,
                                   f"mailer error: {type(error).__name__}")

    def _settled(self, notice: Due, outcome: Outcome) -> None:
        if not notice.recipients:
            outcome = Outcome(())
        settlement = settle(notice, outcome, self.moment, self.clock(), self.retry)
        if not notice.recipients:
            settlement = replace(settlement, status="failed", last_error="no recipients")
        self.counts.add(settlement)
        if settlement.status != "sent":  # retries at debug: a server down is one summary
            level = log.debug if settlement.status == "retrying" else log.warning
            level(f"notice_{settlement.status}", id=notice.id, kind=notice.kind,
                  attempts=settlement.attempts, error=settlement.last_error)
        self._unwritten.append(settlement)
        if len(self._unwritten) >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._unwritten:
            unwritten, self._unwritten = self._unwritten, []
            with self.engine.begin() as connection:
                write_settlements(connection, unwritten)

    def _error(self, notification_id: int, reason: str) -> None:
        self.counts.errors.append({"record": "notification", "id": str(notification_id),
                                   "reason": reason})


async def drain(
    engine: Engine, mailer: Mailer, policy: Policy, moment: datetime, *, clock: Clock,
    retry: RetryPolicy | None = None, limit: int | None = None, build: Builder = build_for,
) -> DeliveryCounts:
    """`deliver_due` inside a running event loop."""
    return await Drain(engine, mailer, policy, moment, clock=clock,
                       retry=retry or retry_policy(policy), build=build, limit=limit).run()


def deliver_due(
    engine: Engine, policy: Policy, settings: Settings, moment: datetime, *, clock: Clock,
    mailer: Mailer | None = None, retry: RetryPolicy | None = None, limit: int | None = None,
) -> DeliveryCounts:
    """Deliver every notification due at the pass moment `moment`; return the counts.

    `moment` judges the send window and the retry schedule; `clock()` gives the real
    time for `sent_at`, the Date header and leases. The mailer is SMTP when SMTP_URL is
    set, else `.eml` files under `settings.mail_dir` (`counts.transport` says which).
    Refused or undeliverable messages are counted, not raised.
    """
    chosen = mailer if mailer is not None else open_mailer(settings)
    return asyncio.run(drain(engine, chosen, policy, moment, clock=clock, retry=retry,
                             limit=limit))


def plan_due(connection: Connection, policy: Policy, moment: datetime) -> Counter[str]:
    """What a drain at `moment` would do, without claiming or sending (dry runs):
    counts of `send`, `wait` and `skip`."""
    plan: Counter[str] = Counter()
    for notice in waiting_rows(connection, moment):
        decision = window_decision(notice, moment, policy)
        plan[{SendNow: "send", WaitUntil: "wait", Skip: "skip"}[type(decision)]] += 1
    return plan
