"""The outbox: claim due notifications, hand them to a mailer, record what happened.

Time. The pass moment T (`moment`, `--as-of`) judges the send window and the retry
schedule; the real time (`clock()`) is recorded only as `sent_at`, in the Date header
and in the claim's lease. Nothing here reads the wall clock itself.

Decisions are values, made by the pure functions of `worker.mail.decisions` (send
window, retry schedule, settling one attempt's replies) and carried out by `Drain`.

Claims. A batch is claimed in one statement: rows waiting (`queued`, `retrying`), due
(`not_before` empty or at most T) and not leased by another process get this drain's
token and a lease (PostgreSQL picks them with FOR UPDATE SKIP LOCKED; SQLite's
BEGIN IMMEDIATE serialises the conditional UPDATE). Only the rows the statement
returned are sent, so two processes never send one notice at once. The lease is renewed
every third of its length while the drain runs.

Records. A notice is marked `sent` only after the server accepted it, by the group
commit of `worker.drain.writer`: outcomes are kept in memory until the transaction
recording them has committed, and a commit starts as soon as the previous one ends;
senders hold back while 2 x connections - 1 outcomes wait. The next batch is claimed
only once every outcome of the last one is committed.

One drain per process: the pass's drain and the periodic drain of `start` take turns
(`deliver_due`), so the configured connection cap ([delivery] connections) holds per
process. When the database is away the drain starts no new send and claims nothing,
finishes the sends in hand, keeps their outcomes and writes them when it answers.

What a crash leaves, step by step (`worker.support.crashpoints` reaches each in the tests):
after a claim, leased rows that wait for their lease to end and then go out once; after
the server's 250 and before the commit, the outcomes not yet committed (at most
3 x connections - 2, counting the sends in flight): those notices go out again after
the lease, with the same Message-ID and the same bytes; inside a claim, nothing (the
claim is rolled back, every earlier outcome is committed).

A stop request (`stop`: a `threading.Event` or a callable, `worker.support.stopping`) claims
nothing more, sends nothing more, finishes the sends in hand, writes every outcome and
gives back the leases of the rows claimed and not sent, so another process takes them
at once.

Messages are built once (`build_for`: `worker.mail.render` and `worker.mail.messages`), kept in
`notification_messages` while the notice waits (apart from its row, which claims and
outcomes rewrite), and stamped with their Date at each hand-over; the Message-ID never
changes. The messages of notices in a final state are deleted by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.leases import extend_leases
from worker.db.runner import Database, GaveUp
from worker.db.schema import MESSAGES, metadata
from worker.drain.writer import OutcomeWriter
from worker.errors import describe
from worker.events import record_final_notices, record_sent_notices
from worker.mail.decisions import (
    DIGEST,
    FINAL,
    R_DEAD,
    R_FAILED,
    R_RETRYING,
    R_SENT,
    WAITING,
    Due,
    GiveUp,
    Retry,
    RetryPolicy,
    SendNow,
    Settlement,
    Skip,
    WaitUntil,
    WindowDecision,
    describe_refusals,
    retry_decision,
    retry_policy,
    settle,
    window_decision,
)
from worker.mail.messages import UnsafeHeader, message_bytes, message_id_for
from worker.mail.render import render_notification
from worker.mail.transports.base import Mailer, Outcome, Outgoing, Verdict
from worker.mail.transports.choice import open_mailer
from worker.support import crashpoints
from worker.support import instruments as metrics
from worker.support.stopping import Stop, requested

__all__ = [
    "DIGEST", "FINAL", "R_DEAD", "R_FAILED", "R_RETRYING", "R_SENT", "WAITING",
    "BuildFailure", "DeliveryCounts", "Drain", "Due", "GiveUp", "Retry", "RetryPolicy",
    "SendNow", "Settlement", "Skip", "WaitUntil", "WindowDecision", "build_for",
    "build_messages", "claim", "deliver_due", "describe_refusals", "drain", "extend_lease",
    "forget_messages",
    "plan_due", "release", "retry_decision", "retry_policy", "settle", "stamp_date",
    "waiting_rows", "window_decision", "write_built", "write_settlements", "write_skips",
    "write_waits",
]

log = structlog.get_logger("worker.mail.outbox")
NOTIFICATIONS = metadata.tables["notifications"]
Clock = Callable[[], datetime]
Builder = Callable[[Row[Any]], tuple[bytes, str]]
_ONE_DRAIN = threading.Lock()  # the pass's drain and the periodic drain take turns


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
    NOTIFICATIONS.c.message_id,
    NOTIFICATIONS.c.created_at, NOTIFICATIONS.c.not_before,
    NOTIFICATIONS.c.ref, NOTIFICATIONS.c.reseller_id,
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
    """Lease up to `limit` due notifications to `token` (see the module docstring).

    The rows are picked in a materialised CTE: PostgreSQL runs a `LIMIT … FOR UPDATE SKIP
    LOCKED` subquery inside `UPDATE … WHERE id IN (…)` again as the update goes on, and
    each run skips the rows just updated, so that form leased every due row at once."""
    due = _due_condition(moment, now)
    columns = NOTIFICATIONS.c
    picked = (select(columns.id).where(due).order_by(columns.id).limit(limit)
              .with_for_update(skip_locked=True).cte("picked")
              .prefix_with("MATERIALIZED", dialect="postgresql"))
    statement = (update(NOTIFICATIONS).where(columns.id.in_(select(picked.c.id)), due)
                 .values(claim_token=token, claimed_until=now + lease).returning(*_CLAIMED))
    rows = connection.execute(statement).all()
    messages = _messages(connection, [row.id for row in rows])
    return sorted((_due_of(row, messages.get(row.id)) for row in rows),
                  key=lambda notice: notice.id)


def _messages(connection: Connection, ids: Sequence[int]) -> dict[int, bytes]:
    if not ids:
        return {}
    query = select(MESSAGES.c.notification_id, MESSAGES.c.message_bytes).where(
        MESSAGES.c.notification_id.in_(ids))
    return {row.notification_id: row.message_bytes for row in connection.execute(query)}


def _due_of(row: Row[Any], message: bytes | None = None) -> Due:
    return Due(id=row.id, kind=row.kind, audience=row.audience,
               occasion_date=row.occasion_date, timezone=row.timezone,
               recipients=tuple(row.recipients or ()), attempts=row.attempts,
               last_error=row.last_error, results=row.recipient_results or {},
               sender=row.sender, message_bytes=message,
               message_id=row.message_id,
               due_since=max(row.created_at, row.not_before or row.created_at),
               ref=row.ref, reseller_id=row.reseller_id)


def waiting_rows(connection: Connection, moment: datetime) -> list[Due]:
    """Due notifications, read without claiming and without their messages (for dry
    runs: the send window is all they decide)."""
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


def write_skips(connection: Connection, skips: Sequence[tuple[int, str]], now: datetime) -> None:
    if skips:
        statement = (update(NOTIFICATIONS)
                     .where(NOTIFICATIONS.c.id == bindparam("b_id"), _still_waiting())
                     .values(_released(status="cancelled", last_error=bindparam("b_reason"))))
        connection.execute(statement, [{"b_id": i, "b_reason": r} for i, r in skips])
        record_final_notices(connection, {i: "cancelled" for i, _ in skips}, now)


def write_built(connection: Connection, built: Mapping[int, tuple[bytes, str]]) -> None:
    """Keep built messages, so a retry or another process sends the very same bytes."""
    if built:
        statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
                     .values(message_id=bindparam("b_mid")))
        connection.execute(statement, [{"b_id": i, "b_mid": mid}
                                       for i, (_data, mid) in built.items()])
        connection.execute(delete(MESSAGES).where(MESSAGES.c.notification_id.in_(built)))
        connection.execute(insert(MESSAGES), [{"notification_id": i, "message_bytes": data}
                                              for i, (data, _mid) in built.items()])


def forget_messages(connection: Connection) -> int:
    """Delete the messages of notices now in a final state: they are not sent again.
    Each real pass calls it as it opens. The drain leaves them: deleting a message
    costs about as much as recording its outcome, and a drain's time is the sending's."""
    final = exists().where(NOTIFICATIONS.c.id == MESSAGES.c.notification_id,
                           NOTIFICATIONS.c.status.not_in(WAITING))
    return int(connection.execute(delete(MESSAGES).where(final)).rowcount or 0)


def _settlement_update(*, only_waiting: bool) -> Any:
    values = _released(
        status=bindparam("b_status"), attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"), recipient_results=bindparam("b_results"),
        not_before=bindparam("b_not_before"), sent_at=bindparam("b_sent_at"),
    )
    statement = update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
    if only_waiting:
        statement = statement.where(_still_waiting())
    return statement.values(values)


# Built once: making an UPDATE costs about as much as running it for a few rows.
_RECORD_SENT = _settlement_update(only_waiting=False)
_RECORD_IF_WAITING = _settlement_update(only_waiting=True)


def write_settlements(
    connection: Connection, settlements: Sequence[Settlement], now: datetime
) -> None:
    """Record outcomes and release the leases. `sent` is written whatever happened to
    the row meanwhile (it is a fact); other outcomes only to rows still waiting, so a
    notice cancelled while in flight stays cancelled. Each final state written gets its
    event in this transaction (worker.events), stamped `now` (the real time). Rows are
    written in id order, the order the claim locks them in."""
    told = all(s.status == "sent" and s.facts is not None for s in settlements)
    in_order = sorted(settlements, key=lambda settlement: settlement.id)  # one lock order
    with _pipelined(connection) if told else contextlib.nullcontext():
        _write_settlements(connection, in_order, now)


@contextlib.contextmanager
def _pipelined(connection: Connection) -> Iterator[None]:
    """On PostgreSQL (psycopg), the statements of the block in one pipeline: sent
    together, answered together, instead of a round trip each (a third of the time of
    recording a few outcomes, measured on a local server). Only for statements whose
    rows nobody reads: a result read inside a pipeline hung the transaction.

    An error the server reports for a statement of the pipeline surfaces when the
    pipeline ends, outside SQLAlchemy: it is wrapped here as SQLAlchemy would have done
    (a deadlock, `OperationalError`), so that callers tell an outage, a conflict and a
    bug apart as for any other statement (worker.db.failures)."""
    driver = connection.connection.driver_connection
    pipeline = getattr(driver, "pipeline", None)
    if connection.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    module = connection.dialect.loaded_dbapi
    try:
        with pipeline():
            yield
    except module.Error as error:
        raise DBAPIError.instance(None, None, error, module.Error,
                                  dialect=connection.dialect) from error


def _write_settlements(
    connection: Connection, settlements: Sequence[Settlement], now: datetime
) -> None:
    sent = [s for s in settlements if s.status == "sent"]
    other = [s for s in settlements if s.status != "sent"]
    if sent:
        connection.execute(_RECORD_SENT, [_params(s) for s in sent])
    if other:
        connection.execute(_RECORD_IF_WAITING, [_params(s) for s in other])
    # One event per notice now in a final state (none where the update did not apply):
    # a `sent` always applies, and its facts came with the claim; the others are read back.
    told = [s for s in sent if s.facts is not None]
    record_final_notices(connection, {s.id: s.status for s in settlements
                                      if s.final and not (s.status == "sent" and s.facts)},
                         now)
    record_sent_notices(connection, [
        {**(s.facts or {}), "id": s.id, "recipient_results": s.results, "sent_at": s.sent_at}
        for s in told], now)


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
    """Keep the notices `token` still holds until `until` (a long, slow drain); rows being
    recorded are skipped (worker.db.leases)."""
    return extend_leases(connection, NOTIFICATIONS, token, until)


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
    commits: int = 0  # transactions that recorded outcomes (not in the summary)

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
    """Claims, sends and records until nothing is due at `moment`, `limit` is hit or
    `stop` is set (see the module docstring). Made inside the event loop that runs it."""

    def __init__(
        self, engine: Engine, mailer: Mailer, policy: Policy, moment: datetime, *,
        clock: Clock, retry: RetryPolicy, build: Builder = build_for,
        limit: int | None = None, stop: Stop = None,
    ) -> None:
        self.mailer, self.policy = mailer, policy
        self.moment, self.clock, self.retry, self.build = moment, clock, retry, build
        self.limit, self.stop = limit, stop
        self.token = uuid.uuid4().hex
        self.counts = DeliveryCounts(transport=mailer.description)
        self.database = Database(engine)
        # Outcomes waiting for a commit plus sends in flight stay under 3 x connections
        # - 2 (10 with 4 connections): the most a SIGKILL can send twice.
        self.writer = OutcomeWriter(self.database, self._record,
                                    most=2 * max(1, mailer.concurrency) - 1)
        self._handled = 0

    def stopping(self) -> bool:
        return requested(self.stop)

    def _record(self, connection: Connection, settlements: Sequence[Settlement]) -> None:
        write_settlements(connection, settlements, self.clock())

    async def run(self) -> DeliveryCounts:
        writer = asyncio.create_task(self.writer.run())
        heartbeat = asyncio.create_task(self._keep_lease())
        try:
            await self._batches()
        finally:
            heartbeat.cancel()
            try:
                await self.writer.flushed()  # every outcome committed before any release
            finally:
                writer.cancel()
                await self.mailer.close()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.gather(writer, heartbeat, return_exceptions=True)
            self.database.close()
            with contextlib.suppress(GaveUp):
                await self.database.run(lambda c: release(c, self.token),
                                        give_up=self.stopping)
        self.counts.commits = self.writer.commits
        log.info("delivery_finished", transport=self.counts.transport,
                 **self.counts.as_dict(), errors=len(self.counts.errors),
                 stopped=self.stopping())
        return self.counts

    async def _batches(self) -> None:
        while not self.stopping() and (self.limit is None or self._handled < self.limit):
            try:
                batch = await self._claim()
            except GaveUp:
                return
            if not batch:
                return
            self._handled += len(batch)
            await self._send_all(await self._prepare(batch))
            await self.writer.flushed()  # the next claim finds nothing unrecorded

    async def _keep_lease(self) -> None:
        """Extend the lease every third of it: a batch slowed down by a server that
        takes its time (timeouts of minutes) is never claimed by another process."""
        while True:
            await asyncio.sleep(self.retry.lease.total_seconds() / 3)
            try:  # an outage is waited out inside `run`; anything else is said, not fatal
                await self.database.run(
                    lambda c: extend_lease(c, self.token, self.clock() + self.retry.lease))
            except Exception as error:
                log.warning("lease_not_extended", error=describe(error))

    async def _claim(self) -> list[Due]:
        size = self.retry.batch if self.limit is None else min(
            self.retry.batch, self.limit - self._handled)

        def work(connection: Connection) -> list[Due]:
            batch = claim(connection, self.moment, self.clock(), self.token,
                          self.retry.lease, size)
            crashpoints.reached("in_claim")
            return batch

        batch = await self.database.run(work, give_up=self.stopping)
        crashpoints.reached("after_claim")
        return batch

    async def _prepare(self, batch: list[Due]) -> list[Due]:
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
        missing = [n.id for n in ready if n.message_bytes is None or n.message_id is None]

        def work(connection: Connection) -> tuple[dict[int, tuple[bytes, str]],
                                                  dict[int, BuildFailure]]:
            write_waits(connection, waits)
            built = build_messages(connection, missing, self.build)
            write_skips(connection, skips, self.clock())  # last: its events lock the feed
            return built

        built, failed = await self.database.run(work)
        return self._built(ready, built, failed)

    def _built(self, notices: list[Due], built: Mapping[int, tuple[bytes, str]],
               failed: Mapping[int, BuildFailure]) -> list[Due]:
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
        """Up to the mailer's concurrency at once. Before each message: nothing new once
        stopping (the rest is released at the end), and nothing while the database is
        away (a send in hand finishes; its outcome waits in the writer)."""
        queue = iter(notices)

        async def worker() -> None:
            for notice in queue:
                await self.database.up.wait()
                await self.writer.room()
                if self.stopping():
                    return
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
            outcome = await self.mailer.send(outgoing)
        except Exception as error:  # a mailer bug must not lose the notice: retry it
            log.exception("mailer_failed", id=notice.id)
            self._error(notice.id, f"mailer error: {type(error).__name__}: {error}")
            return Outcome.for_all(pending, Verdict.TRANSIENT, None,
                                   f"mailer error: {type(error).__name__}")
        if outcome.accepted:
            crashpoints.reached("after_accept")
        return outcome

    def _settled(self, notice: Due, outcome: Outcome) -> None:
        if not notice.recipients:
            outcome = Outcome(())
        settlement = settle(notice, outcome, self.moment, self.clock(), self.retry)
        if not notice.recipients:
            settlement = replace(settlement, status="failed", last_error="no recipients")
        settlement = replace(settlement, facts={
            "kind": notice.kind, "ref": notice.ref, "audience": notice.audience,
            "recipients": list(notice.recipients), "message_id": notice.message_id,
            "reseller_id": notice.reseller_id})
        self.counts.add(settlement)
        if settlement.sent_at is not None and notice.due_since is not None:
            metrics.record_delivery_latency((settlement.sent_at - notice.due_since)
                                            .total_seconds())
        if settlement.status != "sent":  # retries at debug: a server down is one summary
            level = log.debug if settlement.status == "retrying" else log.warning
            level(f"notice_{settlement.status}", id=notice.id, kind=notice.kind,
                  attempts=settlement.attempts, error=settlement.last_error)
        self.writer.add(settlement)

    def _error(self, notification_id: int, reason: str) -> None:
        self.counts.errors.append({"record": "notification", "id": str(notification_id),
                                   "reason": reason})


async def drain(
    engine: Engine, mailer: Mailer, policy: Policy, moment: datetime, *, clock: Clock,
    retry: RetryPolicy | None = None, limit: int | None = None, build: Builder = build_for,
    stop: Stop = None,
) -> DeliveryCounts:
    """One drain inside a running event loop (no turn-taking: see `deliver_due`)."""
    return await Drain(engine, mailer, policy, moment, clock=clock,
                       retry=retry or retry_policy(policy), build=build, limit=limit,
                       stop=stop).run()


def deliver_due(
    engine: Engine, policy: Policy, settings: Settings, moment: datetime, *, clock: Clock,
    mailer: Mailer | None = None, retry: RetryPolicy | None = None, limit: int | None = None,
    stop: Stop = None,
) -> DeliveryCounts:
    """Deliver every notification due at the pass moment `moment`; return the counts.

    `moment` judges the send window and the retry schedule; `clock()` gives the real
    time for `sent_at`, the Date header and leases. The mailer is SMTP when SMTP_URL is
    set (at most [delivery] connections at once), else `.eml` files under
    `settings.mail_dir` (`counts.transport` says which). Refused or undeliverable
    messages are counted, not raised. One drain at a time in a process: a second caller
    waits for the first to finish. `stop` set: see the module docstring.
    """
    chosen = mailer if mailer is not None else open_mailer(
        settings, connections=policy.delivery.connections)
    if not _ONE_DRAIN.acquire(blocking=False):
        log.info("delivery_waiting", reason="another drain of this process is running")
        _ONE_DRAIN.acquire()
    try:
        return asyncio.run(drain(engine, chosen, policy, moment, clock=clock, retry=retry,
                                 limit=limit, stop=stop))
    finally:
        _ONE_DRAIN.release()


def plan_due(connection: Connection, policy: Policy, moment: datetime) -> Counter[str]:
    """What a drain at `moment` would do, without claiming or sending (dry runs):
    counts of `send`, `wait` and `skip`."""
    plan: Counter[str] = Counter()
    for notice in waiting_rows(connection, moment):
        decision = window_decision(notice, moment, policy)
        plan[{SendNow: "send", WaitUntil: "wait", Skip: "skip"}[type(decision)]] += 1
    return plan
