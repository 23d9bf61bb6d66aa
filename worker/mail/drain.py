"""The mail queue: what the one drain (worker.drain) needs to deliver notices.

Time. The pass moment T (`moment`, `--as-of`) judges the send window and the retry
schedule; the real time (`clock()`) is recorded only as `sent_at`, in the Date header
and in the claim's lease. Nothing here reads the wall clock itself.

Decisions are values, made by the pure functions of `worker.mail.decisions` (send window,
retry schedule, settling one attempt's replies) and carried out here: a claimed batch is
sorted into notices that wait for their window, digests skipped and notices to send; the
messages not built yet are built (worker.mail.compose) and kept; each notice is handed
to the transport with its Date stamped, signed when its From domain has a DKIM key
(worker.mail.dkim), and its answer settled per recipient. A signed message that must be
tried again is kept as sent (Date and signature on it), so that every retry sends the
very same bytes; an unsigned one gets a new Date at each hand-over. With `[mail]
bounce_domain`, each recipient gets its own transaction and envelope sender
(worker.mail.senders).

One drain per process: the pass's drain and the periodic drain of `start` take turns
(`deliver_due`), so the configured connection cap ([delivery] connections) holds per
process. Claims, leases, group commit, outages, stops and what a crash leaves: see
worker.drain.drain; the table's statements: worker.mail.store.

Imports: worker.drain, worker.mail's own modules, worker.config, worker.support.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine

from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.schema import NOTIFICATIONS
from worker.drain.drain import Drain
from worker.drain.schedule import RetrySchedule
from worker.mail.compose import Builder, builder_for, stamp_date
from worker.mail.decisions import (
    Due,
    SendNow,
    Settlement,
    Skip,
    WaitUntil,
    settle,
    window_decision,
)
from worker.mail.dkim import Signer, is_sealed
from worker.mail.senders import Senders
from worker.mail.store import (
    BuildFailure,
    build_messages,
    claim,
    waiting_rows,
    write_settlements,
    write_skips,
    write_waits,
)
from worker.mail.transports.base import Mailer, Outcome, Outgoing, Verdict
from worker.mail.transports.choice import open_mailer
from worker.support import crashpoints
from worker.support import instruments as metrics
from worker.support.stopping import Stop

log = structlog.get_logger("worker.mail")
Clock = Callable[[], datetime]
_ONE_DRAIN = threading.Lock()  # the pass's drain and the periodic drain take turns


def retry_policy(policy: Policy) -> RetrySchedule:
    """The retry schedule of `config/policy.toml`'s [delivery] section."""
    section = policy.delivery
    return RetrySchedule.from_minutes(section.retry_delays_minutes,
                                      lease=timedelta(minutes=section.lease_minutes),
                                      batch=section.batch,
                                      hold_after=section.hold_after_unrecorded_claims)


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
    suppressed_recipients: int = 0  # not sent to: their address is suppressed
    errors: list[dict[str, str]] = field(default_factory=list)
    commits: int = 0  # transactions that recorded outcomes (not in the summary)

    def as_dict(self) -> dict[str, int]:
        counts = {"sent": self.sent, "retrying": self.retrying, "failed": self.failed,
                  "dead": self.dead, "cancelled": self.cancelled, "deferred": self.deferred,
                  "refused_recipients": self.refused_recipients,
                  "suppressed_recipients": self.suppressed_recipients}
        return {key: value for key, value in counts.items() if value}

    def add(self, settlement: Settlement) -> None:
        setattr(self, settlement.status, getattr(self, settlement.status) + 1)
        if settlement.status == "sent":
            self.refused_recipients += settlement.refused
        if settlement.final:
            self.suppressed_recipients += settlement.suppressed


MailDrain = Drain[Due, Settlement]


class MailQueue:
    """Notices due at `moment`, sent through `mailer` (see the module docstring)."""

    component = "delivery"
    table = NOTIFICATIONS

    def __init__(self, mailer: Mailer, policy: Policy, moment: datetime, *, clock: Clock,
                 schedule: RetrySchedule, build: Builder | None = None,
                 signer: Signer | None = None) -> None:
        self.mailer, self.policy, self.moment = mailer, policy, moment
        self.clock, self.schedule = clock, schedule
        self.build = build or builder_for(policy)
        self.signer = signer if signer is not None else Signer.from_policy(policy)
        self.senders = Senders.from_policy(policy)
        self.concurrency = max(1, mailer.concurrency)
        self.unrecorded = 2 * self.concurrency - 1  # 10 sent twice at most per kill, with 4
        self.linger = 0.005  # a group of 7 fills in about that at full speed
        self.counts = DeliveryCounts(transport=mailer.description)

    def claim(self, connection: Connection, token: str, size: int) -> list[Due]:
        return claim(connection, self.moment, self.clock(), token, self.schedule.lease, size,
                     self.schedule.hold_after)

    def item_id(self, item: Due) -> int:
        return item.id

    def settlement_id(self, settlement: Settlement) -> int:
        return settlement.id

    def write(self, connection: Connection, settlements: Sequence[Settlement]) -> None:
        write_settlements(connection, settlements, self.clock())

    async def close(self) -> None:
        await self.mailer.close()

    async def prepare(self, batch: list[Due], drain: MailDrain) -> list[Due]:
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
        if not (waits or skips or missing):
            return ready

        def work(connection: Connection) -> tuple[dict[int, tuple[bytes, str]],
                                                  dict[int, BuildFailure]]:
            write_waits(connection, waits)
            built = build_messages(connection, missing, self.build)
            write_skips(connection, skips, self.clock())  # last: its events lock the feed
            return built

        built, failed = await drain.database.run(work)
        return self._built(ready, built, failed, drain)

    def _built(self, notices: list[Due], built: Mapping[int, tuple[bytes, str]],
               failed: Mapping[int, BuildFailure], drain: MailDrain) -> list[Due]:
        ready = []
        for notice in notices:
            if notice.id in built:
                data, message_id = built[notice.id]
                ready.append(replace(notice, message_bytes=data, message_id=message_id))
            elif notice.id in failed:
                failure = failed[notice.id]
                self._error(notice.id, failure.reason)
                verdict = Verdict.PERMANENT if failure.permanent else Verdict.TRANSIENT
                drain.record(self._settled(notice, Outcome.for_all(
                    notice.pending, verdict, None, failure.reason)))
            else:
                ready.append(notice)
        return ready

    async def send(self, notice: Due, drain: MailDrain) -> Settlement:
        data = self._final_bytes(notice)
        settlement = self._settled(notice, await self._attempt(notice, data))
        if settlement.status == "retrying" and is_sealed(data) and data != notice.message_bytes:
            settlement = replace(settlement, sealed=data)  # the next attempts send it as is
        return settlement

    def _final_bytes(self, notice: Due) -> bytes:
        """The bytes handed over: kept as they are once sealed, else stamped with the
        Date of this hand-over and signed when the From domain has a key."""
        data = notice.message_bytes or b""
        if is_sealed(data) or not notice.pending:
            return data
        stamped = stamp_date(data, self.clock())
        try:
            return self.signer.seal(stamped) or stamped
        except Exception as error:  # a message dkimpy cannot sign goes unsigned, logged
            log.warning("message_not_signed", id=notice.id, error=repr(error))
            return stamped

    async def _attempt(self, notice: Due, data: bytes) -> Outcome:
        pending = notice.pending
        if not pending:
            return Outcome(())
        if not notice.sender:
            self._error(notice.id, "no sender address in the notification's payload")
            return Outcome.for_all(pending, Verdict.TRANSIENT, None, "no sender address")
        senders, message_id = self.senders, notice.message_id or ""
        if senders.per_recipient and notice.bounce_token:
            handed = [Outgoing(notice.key, senders.envelope(notice.sender, notice.bounce_token,
                                                            recipient), (recipient,), data,
                               message_id) for recipient in pending]
        else:
            handed = [Outgoing(notice.key, senders.envelope(notice.sender, None, pending[0]),
                               pending, data, message_id)]
        try:
            replies = [(await self.mailer.send(outgoing)).replies for outgoing in handed]
            outcome = Outcome(tuple(reply for some in replies for reply in some))
        except Exception as error:  # a mailer bug must not lose the notice: retry it
            log.exception("mailer_failed", id=notice.id)
            self._error(notice.id, f"mailer error: {type(error).__name__}: {error}")
            return Outcome.for_all(pending, Verdict.TRANSIENT, None,
                                   f"mailer error: {type(error).__name__}")
        if outcome.accepted:
            crashpoints.reached("after_accept")
        return outcome

    def _settled(self, notice: Due, outcome: Outcome) -> Settlement:
        if not notice.recipients:
            outcome = Outcome(())
        settlement = settle(notice, outcome, self.moment, self.clock(), self.schedule)
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
        return settlement

    def _error(self, notification_id: int, reason: str) -> None:
        self.counts.errors.append({"record": "notification", "id": str(notification_id),
                                   "reason": reason})


async def drain(
    engine: Engine, mailer: Mailer, policy: Policy, moment: datetime, *, clock: Clock,
    retry: RetrySchedule | None = None, limit: int | None = None, build: Builder | None = None,
    stop: Stop = None, signer: Signer | None = None,
) -> DeliveryCounts:
    """One drain inside a running event loop (no turn-taking: see `deliver_due`)."""
    queue = MailQueue(mailer, policy, moment, clock=clock, build=build, signer=signer,
                      schedule=retry or retry_policy(policy))
    one: MailDrain = Drain(engine, queue, clock=clock, limit=limit, stop=stop)
    await one.run()
    queue.counts.commits = one.writer.commits
    log.info("delivery_finished", transport=queue.counts.transport,
             **queue.counts.as_dict(), errors=len(queue.counts.errors),
             stopped=one.stopping())
    return queue.counts


def deliver_due(
    engine: Engine, policy: Policy, settings: Settings, moment: datetime, *, clock: Clock,
    mailer: Mailer | None = None, retry: RetrySchedule | None = None,
    limit: int | None = None, stop: Stop = None, signer: Signer | None = None,
) -> DeliveryCounts:
    """Deliver every notification due at the pass moment `moment`; return the counts.

    `moment` judges the send window and the retry schedule; `clock()` gives the real
    time for `sent_at`, the Date header and leases. The mailer is SMTP when SMTP_URL is
    set (at most [delivery] connections at once), else `.eml` files under
    `settings.mail_dir` (`counts.transport` says which). Refused or undeliverable
    messages are counted, not raised. One drain at a time in a process: a second caller
    waits for the first to finish. `stop` set: see worker.drain.drain. `signer`: the
    DKIM keys read at start (None: read from the policy now).
    """
    chosen = mailer if mailer is not None else open_mailer(
        settings, connections=policy.delivery.connections)
    if not _ONE_DRAIN.acquire(blocking=False):
        log.info("delivery_waiting", reason="another drain of this process is running")
        _ONE_DRAIN.acquire()
    try:
        return asyncio.run(drain(engine, chosen, policy, moment, clock=clock, retry=retry,
                                 limit=limit, stop=stop, signer=signer))
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
