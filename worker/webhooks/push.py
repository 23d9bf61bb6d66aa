"""The webhook queue: what the one drain (worker.drain) needs to push events. New events
get their delivery rows first (`WebhookQueue.enqueue_new`); due deliveries are then
claimed, POSTed signed and their answers recorded. `push_due` is what `run --once`
(after the mail) and `start` call.

Time, as for the mail: the pass moment `moment` judges which deliveries are due and when
the next attempt is; the real time (`clock()`) goes into `webhook-timestamp` (receivers
compare it with their own clock), `delivered_at` and the leases.

HTTP: one `httpx.AsyncClient` per drain, so connections to an endpoint are reused; at
most `concurrency` requests in flight; every request bounded by `timeout_seconds`. A 2xx
delivers; a 410 disables the endpoint (the rest of its claimed rows are given back
untried); anything else, a timeout or a refused connection waits for the next delay. An
endpoint that keeps timing out is left alone for the rest of the drain
(`PAUSE_AFTER_TIMEOUTS`), so a drain never lasts minutes because one receiver hangs.

Claims, leases, group commit, outages, stops, refused writes and what a crash leaves
are the drain's (worker.drain.drain): a crash pushes again at most the answers not yet
committed (`UNRECORDED`, 100, plus the requests in flight), under the same webhook-id,
which the receivers de-duplicate on.

Imports: worker.drain, worker.webhooks' own modules, worker.config, worker.db,
worker.support, worker.errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import Connection, Engine

from worker.config.endpoints import Endpoint, configured_endpoints
from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.schema import WEBHOOK_DELIVERIES
from worker.drain.drain import Drain
from worker.drain.schedule import RetrySchedule
from worker.errors import ConfigError
from worker.support.stopping import Stop
from worker.webhooks import store
from worker.webhooks.schedule import Answer, Settlement, retry_schedule, settle
from worker.webhooks.signing import event_body, headers

log = structlog.get_logger("worker.webhooks")
# Answers that may wait for their commit: a crash pushes at most this many events again
# (plus those in flight), under the same webhook-id. Senders pause while this many wait:
# at 15 (the mail's 2 x concurrency - 1) they paused so often that the push fell to 0.7
# of plain httpx; at 100 it is 0.8 (scripts/bench_webhooks.py).
UNRECORDED = 100
LINGER = 0.05  # a commit waits this long for more answers: tens per commit, not a few
PAUSE_AFTER_TIMEOUTS = 3  # in a row, to one endpoint: the rest waits for the next drain
Clock = Callable[[], datetime]
Item = tuple["store.Claimed", "store.EventRow", bytes]  # a claimed delivery, ready to send


@dataclass
class PushCounts:
    """What one drain did, for the pass summary and the logs."""

    enqueued: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    gone: int = 0
    disabled_endpoints: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | list[str]]:
        counts: dict[str, int | list[str]] = {
            "enqueued": self.enqueued, "delivered": self.delivered,
            "retrying": self.retrying, "dead": self.dead, "gone": self.gone}
        found = {key: value for key, value in counts.items() if value}
        if self.disabled_endpoints:
            found["disabled_endpoints"] = list(self.disabled_endpoints)
        return found

    def add(self, settlement: Settlement) -> None:
        setattr(self, settlement.status, getattr(self, settlement.status) + 1)

    def __str__(self) -> str:
        """"2 enqueued, 1 delivered, 1 retrying; disabled by 410: crm"."""
        counts = ", ".join(f"{value} {key}" for key, value in self.as_dict().items()
                           if isinstance(value, int))
        text = counts or "nothing due"
        if self.disabled_endpoints:
            text += f"; disabled by 410: {', '.join(self.disabled_endpoints)}"
        return text


@dataclass(frozen=True, slots=True)
class HttpLimits:
    concurrency: int = 8
    timeout_seconds: float = 10.0


async def post(client: httpx.AsyncClient, url: str, body: bytes,
               head: dict[str, str]) -> Answer:
    """One POST; every failure becomes an Answer (never raised)."""
    try:
        response = await client.post(url, content=body, headers=head)
    except httpx.TimeoutException as error:
        return Answer(None, f"timeout ({type(error).__name__})")
    except httpx.HTTPError as error:
        return Answer(None, f"{type(error).__name__}: {error}"[:500])
    reason = None if response.is_success else response.reason_phrase or None
    return Answer(response.status_code, reason)


class WebhookQueue:
    """Deliveries due at `moment`, POSTed signed to `endpoints` (see the module docstring)."""

    component = "webhooks"
    table = WEBHOOK_DELIVERIES

    def __init__(
        self, engine: Engine, endpoints: Sequence[Endpoint], moment: datetime, *,
        clock: Clock, schedule: RetrySchedule, limits: HttpLimits,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine, self.endpoints, self.moment = engine, tuple(endpoints), moment
        self.by_name = {e.name: e for e in self.endpoints}
        self.clock, self.schedule, self.limits = clock, schedule, limits
        self.concurrency = limits.concurrency
        self.unrecorded = UNRECORDED
        self.linger = LINGER
        self.counts = PushCounts()
        self.disabled: set[str] = set()
        self.paused: set[str] = set()
        self._timeouts: dict[str, int] = {}
        pool = httpx.Limits(max_connections=limits.concurrency,
                            max_keepalive_connections=limits.concurrency)
        self.client = httpx.AsyncClient(timeout=limits.timeout_seconds, limits=pool,
                                        transport=transport)

    def item_id(self, item: Item) -> int:
        return item[0].id

    def settlement_id(self, settlement: Settlement) -> int:
        return settlement.id

    async def close(self) -> None:
        await self.client.aclose()

    def enqueue_new(self) -> None:
        """Register the endpoints and give every committed event its delivery rows (the
        safe horizon: see `worker.webhooks.store`)."""
        horizon = store.safe_horizon(self.engine)
        with self.engine.begin() as connection:
            if horizon is None:  # known endpoints only; new ones wait for a horizon
                log.info("webhooks_enqueue_postponed", reason="events table busy")
                states = store.endpoint_states(connection, self.by_name)
            else:
                states = store.sync_endpoints(connection, self.endpoints, horizon,
                                              self.clock())
        self.disabled = {name for name, state in states.items() if not state.enabled}
        while horizon is not None:
            with self.engine.begin() as connection:
                states = store.endpoint_states(connection, self.by_name)
                if all(state.enqueued_through >= horizon for state in states.values()):
                    break
                self.counts.enqueued += store.enqueue(connection, self.endpoints, states,
                                                      horizon, self.clock())

    def claim(self, connection: Connection, token: str, size: int) -> list[Item]:
        enabled = [name for name in self.by_name if name not in self.disabled | self.paused]
        claimed = store.claim(connection, enabled, self.moment, self.clock(), token,
                              self.schedule.lease, size, self.schedule.hold_after)
        events = store.events_of(connection, (c.event_seq for c in claimed))
        bodies = {seq: event_body(e.type, e.occurred_at, e.data) for seq, e in events.items()}
        return [(c, events[c.event_seq], bodies[c.event_seq]) for c in claimed]

    async def prepare(self, batch: list[Item], drain: PushDrain) -> list[Item]:
        return batch

    def write(self, connection: Connection, settlements: Sequence[Settlement]) -> None:
        store.write_settlements(connection, settlements)

    async def send(self, item: Item, drain: PushDrain) -> Settlement | None:
        """One POST and its settlement; None for an endpoint disabled or paused meanwhile
        (left claimed: given back untried at the end)."""
        delivery, event, body = item
        if delivery.endpoint in self.disabled | self.paused:
            return None
        endpoint = self.by_name[delivery.endpoint]
        try:
            head = headers(endpoint.secrets, event.id, self.clock(), body)
            answer = await post(self.client, endpoint.url, body, head)
        except Exception as error:  # a bug here must not lose the event: retry it
            log.exception("webhook_push_failed", seq=event.seq, endpoint=endpoint.name)
            answer = Answer(None, f"worker error: {type(error).__name__}: {error}")
        settlement = settle(delivery.id, delivery.attempts, f"{event.id}:{delivery.endpoint}",
                            answer, self.moment, self.clock(), self.schedule)
        self.counts.add(settlement)
        self._note_timeout(delivery.endpoint, answer)
        if settlement.status == "gone":
            await self._disable(delivery.endpoint, answer, drain)
        elif settlement.status != "delivered":
            level = log.debug if settlement.status == "retrying" else log.warning
            level(f"webhook_{settlement.status}", seq=event.seq, endpoint=delivery.endpoint,
                  attempts=settlement.attempts, error=settlement.last_error)
        return settlement

    def _note_timeout(self, name: str, answer: Answer) -> None:
        """An endpoint that timed out `PAUSE_AFTER_TIMEOUTS` times in a row gets nothing
        more in this drain: each attempt would hold a connection for the whole timeout,
        and a `run --once` would last minutes. Its deliveries wait, untouched, for the
        next drain."""
        timed_out = answer.status_code is None and (answer.error or "").startswith("timeout")
        self._timeouts[name] = self._timeouts.get(name, 0) + 1 if timed_out else 0
        if self._timeouts[name] >= PAUSE_AFTER_TIMEOUTS and name not in self.paused:
            self.paused.add(name)
            log.info("webhook_endpoint_paused", endpoint=name, timeouts=self._timeouts[name])

    async def _disable(self, name: str, answer: Answer, drain: PushDrain) -> None:
        if name in self.disabled:
            return
        self.disabled.add(name)
        self.counts.disabled_endpoints.append(name)
        reason = f"{answer.describe()} from {self.by_name[name].url}"
        log.warning("webhook_endpoint_disabled", endpoint=name, reason=reason)
        await drain.database.run(
            lambda c: store.disable_endpoint(c, name, self.clock(), reason))


PushDrain = Drain[Item, Settlement]


async def push(engine: Engine, endpoints: Sequence[Endpoint], moment: datetime, *,
               clock: Clock, schedule: RetrySchedule, limits: HttpLimits, stop: Stop = None,
               transport: httpx.AsyncBaseTransport | None = None) -> PushCounts:
    """One push inside a running event loop: new events enqueued, then the drain."""
    queue = WebhookQueue(engine, endpoints, moment, clock=clock, schedule=schedule,
                         limits=limits, transport=transport)
    try:
        await asyncio.to_thread(queue.enqueue_new)
    except BaseException:
        await queue.close()
        raise
    one: PushDrain = Drain(engine, queue, clock=clock, stop=stop)
    await one.run()
    if queue.counts.as_dict():
        log.info("webhooks_pushed", **queue.counts.as_dict())
    return queue.counts


def http_limits(policy: Policy) -> HttpLimits:
    return HttpLimits(policy.webhooks.concurrency, policy.webhooks.timeout_seconds)


def push_due(
    engine: Engine, settings: Settings, policy: Policy, moment: datetime, *, clock: Clock,
    stop: Stop = None, transport: httpx.AsyncBaseTransport | None = None,
) -> PushCounts:
    """Push every delivery due at the pass moment `moment` to the configured endpoints;
    return the counts. Without endpoints (no WEBHOOK_URL, no [[webhooks.endpoints]]) it
    does nothing: events are kept in the feed. Failed pushes are counted, not raised."""
    endpoints = configured_endpoints(settings, policy)
    if not endpoints:
        return PushCounts()
    return asyncio.run(push(engine, endpoints, moment, clock=clock,
                            schedule=retry_schedule(policy), limits=http_limits(policy),
                            stop=stop, transport=transport))


def register_endpoints(engine: Engine, settings: Settings, policy: Policy,
                       now: datetime) -> None:
    """Record the configured endpoints before a command writes events (`import`,
    `run --once`, `start`): an endpoint is responsible for every event written after it
    first appears in the configuration, those of that very command included."""
    endpoints = configured_endpoints(settings, policy)
    horizon = store.safe_horizon(engine) if endpoints else None
    if horizon is not None:  # else the push registers them
        with engine.begin() as connection:
            store.sync_endpoints(connection, endpoints, horizon, now)


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What `events replay` did: deliveries queued again, then what the push did."""

    queued: store.Replayed
    pushed: PushCounts

    def __str__(self) -> str:
        names = ", ".join(self.queued.endpoints) or "no enabled endpoint"
        return (f"{self.queued.events} event(s) queued again to {names} "
                f"({self.queued.deliveries} deliveries); pushed: {self.pushed}")


def requeue_events(engine: Engine, settings: Settings, policy: Policy, seqs: Sequence[int],
                   now: datetime) -> store.Replayed:
    """Queue events `seqs` again to every enabled endpoint (same webhook-id) whose type
    filter takes them; the next push sends them. Endpoints are registered first, so a
    replay can be how a new endpoint receives history."""
    endpoints = configured_endpoints(settings, policy)
    horizon = store.safe_horizon(engine)
    with engine.begin() as connection:
        if horizon is not None:
            store.sync_endpoints(connection, endpoints, horizon, now)
        return store.requeue(connection, endpoints, seqs, now)


def replay(engine: Engine, events: Sequence[Any], *, settings: Settings, policy: Policy,
           now: datetime, clock: Clock) -> ReplayOutcome:
    """`events replay`: push `events` (rows with a `seq`) again to every enabled endpoint
    under their own webhook-ids, now. No endpoint configured: ConfigError (exit 2)."""
    if not configured_endpoints(settings, policy):
        raise ConfigError("WEBHOOK_URL", "no webhook endpoint is configured (set WEBHOOK_URL "
                          "and WEBHOOK_SECRET, or [[webhooks.endpoints]]); "
                          f"{len(events)} event(s) selected, nothing pushed")
    queued = requeue_events(engine, settings, policy, [int(e.seq) for e in events], now)
    pushed = push_due(engine, settings, policy, now, clock=clock)
    return ReplayOutcome(queued, pushed)
