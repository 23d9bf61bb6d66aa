"""Webhooks pushed to a real HTTP receiver on 127.0.0.1: signatures, retries under one
webhook-id, timeouts, refused connections, 410 Gone, three days of failures, replays,
and two replicas that never push one event twice."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import OperationalError
from standardwebhooks import Webhook

from testkit.http import Receiver, closed_port_url, running_receiver
from tests.webhooks_helpers import OLD_SECRET, SECRET, T0, add_event, settings_for, with_webhooks
from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.engine import make_engine
from worker.db.schema import WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from worker.errors import ConfigError
from worker.reports.status import dashboard
from worker.reports.summary import render_dashboard
from worker.webhooks import store
from worker.webhooks.push import PushCounts, push_due, register_endpoints, requeue_events


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def push(engine: Engine, settings: Settings, policy: Policy, moment: datetime) -> PushCounts:
    return push_due(engine, settings, policy, moment, clock=now)


def deliveries(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(
            select(WEBHOOK_DELIVERIES).order_by(WEBHOOK_DELIVERIES.c.event_seq)))


def register(engine: Engine, settings: Settings, policy: Policy) -> None:
    """A first push with an empty feed: the endpoint is responsible from the next event."""
    assert {} == push(engine, settings, policy, T0).as_dict()


def by_hand(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(digest.digest()).decode()


def test_pushes_are_signed_with_both_secrets_during_a_rotation(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """The body is {type, timestamp, data}; each of the two signatures verifies with the
    specification's own verifier and by hand (HMAC-SHA256 over id.timestamp.body)."""
    settings = settings_for(receiver.url, f"{SECRET} {OLD_SECRET}")
    register(engine, settings, policy)
    seq, event_id = add_event(engine, to="lapsed")
    assert 1 == push(engine, settings, policy, T0).delivered
    (request,) = receiver.requests
    assert event_id == request.headers["webhook-id"]
    assert abs(int(request.headers["webhook-timestamp"]) - now().timestamp()) < 60
    body = json.loads(request.body)
    assert ["type", "timestamp", "data"] == list(body)
    assert ("subscription.status_changed", "2027-03-01T09:00:00Z", "lapsed") == (
        body["type"], body["timestamp"], body["data"]["to"])
    signatures = request.headers["webhook-signature"].split(" ")
    assert [by_hand(s, event_id, request.headers["webhook-timestamp"], request.body)
            for s in (SECRET, OLD_SECRET)] == signatures
    for secret in (SECRET, OLD_SECRET):
        assert body == Webhook(secret).verify(request.body, request.headers)
        assert body == Webhook(secret).verify(request.body, {
            **request.headers, "webhook-signature": signatures[secret == OLD_SECRET]})
    assert ["delivered"] == [row.status for row in deliveries(engine)]
    assert seq == deliveries(engine)[0].event_seq


def test_500_then_2xx_is_retried_under_one_webhook_id_with_growing_delays(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Three 500s, then 204: four attempts of one event, the same webhook-id and body
    each time, each wait longer than the one before, judged at the pass moment."""
    answers = iter([500, 500, 500])
    receiver.answer = lambda _request: (next(answers, 204), 0.0)
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    _, event_id = add_event(engine)
    moment, waits = T0, []
    for _ in range(3):
        assert 1 == push(engine, settings, policy, moment).retrying
        (row,) = deliveries(engine)
        assert ("retrying", 500) == (row.status, row.last_status)
        assert {} == push(engine, settings, policy, row.next_attempt_at - timedelta(
            seconds=1)).as_dict()  # not due yet: nothing is sent
        waits.append(row.next_attempt_at - moment)
        moment = row.next_attempt_at
    assert 1 == push(engine, settings, policy, moment).delivered
    (row,) = deliveries(engine)
    assert ("delivered", 4, None) == (row.status, row.attempts, row.next_attempt_at)
    assert [event_id] * 4 == receiver.ids()
    assert 1 == len({r.body for r in receiver.requests})
    assert waits == sorted(waits)
    assert waits[0] < waits[-1]
    assert timedelta(minutes=1) <= waits[0] <= timedelta(minutes=1.2)


def test_a_timeout_and_a_refused_connection_are_retried(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    receiver.answer = lambda _request: (204, 1.5)  # answers after the client gave up
    fast = with_webhooks(policy, timeout_seconds=0.3, endpoints=[
        {"name": "refusing", "url": closed_port_url(), "secrets": [SECRET]}])
    settings = settings_for(receiver.url)
    register(engine, settings, fast)
    add_event(engine)
    assert 2 == push(engine, settings, fast, T0).retrying
    rows = {row.endpoint: row for row in deliveries(engine)}
    assert "timeout" in rows["default"].last_error
    assert "ConnectError" in rows["refusing"].last_error
    assert {"retrying"} == {row.status for row in rows.values()}
    assert all(row.next_attempt_at > T0 for row in rows.values())


def test_410_gone_disables_the_endpoint_and_status_says_so(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    receiver.answer = lambda _request: (410, 0.0)
    serial = with_webhooks(policy, concurrency=1)
    settings = settings_for(receiver.url)
    register(engine, settings, serial)
    for _ in range(3):
        add_event(engine)
    counts = push(engine, settings, serial, T0)
    assert (1, ["default"]) == (counts.gone, counts.disabled_endpoints)
    assert "3 enqueued, 1 gone; disabled by 410: default" == str(counts)
    assert 1 == len(receiver.requests)
    add_event(engine)
    assert 0 == push(engine, settings, serial, T0 + timedelta(days=1)).delivered
    assert 1 == len(receiver.requests)  # no more attempts to it
    with engine.connect() as connection:
        board = dashboard(connection)
    (endpoint,) = board["webhooks"]["endpoints"]
    assert ("disabled", 3) == (endpoint["state"], endpoint["waiting"])
    assert "HTTP 410" in endpoint["disabled_reason"]
    assert {"gone": 1, "pending": 3} == board["webhooks"]["deliveries"]
    assert "default" in render_dashboard(board)
    assert "disabled since" in render_dashboard(board)
    with running_receiver() as moved:  # the portal's new address: enabled again
        assert 3 == push(engine, settings_for(moved.url), serial, T0 + timedelta(days=1)
                         ).delivered
        assert 3 == len(moved.requests)
    assert ["gone", "delivered", "delivered", "delivered"] == [
        row.status for row in deliveries(engine)]


def test_three_days_of_failures_make_the_delivery_dead(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    receiver.answer = lambda _request: (503, 0.0)
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    add_event(engine)
    moment, attempts = T0, 0
    while True:
        counts = push(engine, settings, policy, moment)
        attempts += 1
        (row,) = deliveries(engine)
        if row.status != "retrying":
            break
        moment = row.next_attempt_at
        assert attempts < 50
    assert ("dead", len(policy.webhooks.retry_delays_minutes) + 1) == (row.status, attempts)
    assert 1 == counts.dead
    assert "gave up after" in row.last_error
    assert moment - T0 >= timedelta(days=3)
    assert 1 == len(set(receiver.ids()))


def test_a_new_endpoint_starts_with_new_events_and_replay_pushes_history(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Events before an endpoint is configured are not flooded to it; a replay pushes
    them (and delivered ones again) under their own webhook-ids; type filters hold."""
    old_seq, old_id = add_event(engine)
    filtered = with_webhooks(policy, endpoints=[
        {"name": "codes", "url": receiver.url, "secrets": [SECRET],
         "types": ["reseller_change_code.*"]}])
    settings = settings_for(receiver.url)
    assert {} == push(engine, settings, filtered, T0).as_dict()
    assert [] == receiver.ids()
    new_seq, new_id = add_event(engine, "reseller_change_code.status_changed")
    assert {"enqueued": 2, "delivered": 2} == push(engine, settings, filtered, T0).as_dict()
    assert [new_id, new_id] == receiver.ids()  # default and codes
    queued = requeue_events(engine, settings, filtered, [old_seq, new_seq, 999], now())
    assert (2, 3, (999,)) == (queued.events, queued.deliveries, queued.missing)
    assert 3 == push(engine, settings, filtered, T0).delivered
    assert sorted([new_id] * 4 + [old_id]) == sorted(receiver.ids())


def test_events_replay_pushes_at_once_and_needs_an_endpoint(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """The seam of `events replay`: `worker.webhooks.push.replay(engine, rows, settings=…,
    policy=…, now=…)` queues the rows' events again and pushes them."""
    from worker.db.schema import EVENTS
    from worker.webhooks.push import replay

    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    _, event_id = add_event(engine)
    assert 1 == push(engine, settings, policy, T0).delivered
    with engine.connect() as connection:
        rows = list(connection.execute(select(EVENTS)))
    outcome = replay(engine, rows, settings=settings, policy=policy, now=now(),
                     clock=now)
    assert [event_id, event_id] == receiver.ids()
    assert "1 event(s) queued again to default (1 deliveries); pushed: 1 delivered" == str(
        outcome)
    with pytest.raises(ConfigError, match=r"1 event\(s\) selected, nothing pushed"):
        replay(engine, rows, settings=Settings(), policy=policy, now=now(), clock=now)


def test_dry_runs_and_missing_configuration_push_nothing(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    add_event(engine)
    assert PushCounts() == push(engine, Settings(), policy, T0)
    with engine.connect() as connection:
        assert [] == list(connection.execute(select(WEBHOOK_ENDPOINTS)))
    assert [] == receiver.requests


@pytest.mark.postgres
def test_an_event_committed_late_with_a_lower_seq_is_not_lost(
    postgres_server: str, postgres_template: str, policy: Policy, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL hands out seq 1 to a transaction that commits after seq 2: the
    pusher waits for a safe horizon instead of moving past seq 1 for ever."""
    from tests.conftest import _fresh_postgres

    monkeypatch.setattr(store, "LOCK_WAIT", "200ms")
    engine = make_engine(_fresh_postgres(postgres_server, postgres_template))
    settings = settings_for(receiver.url)
    try:
        register(engine, settings, policy)
        with engine.connect() as slow:
            transaction = slow.begin()
            _, early_id = add_event(slow)
            _, late_id = add_event(engine)  # a larger seq, committed first
            assert {} == push(engine, settings, policy, T0).as_dict()  # horizon unknown
            transaction.commit()
        assert 2 == push(engine, settings, policy, T0).delivered
        assert sorted([early_id, late_id]) == sorted(receiver.ids())
    finally:
        engine.dispose()


def test_two_replicas_never_push_one_event_twice(
    database_url: str, policy: Policy, receiver: Receiver
) -> None:
    """Two processes' worth of pushers (threads with their own engines) on one database:
    FOR UPDATE SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE and a conditional UPDATE on
    SQLite; every event reaches the receiver once and both take part."""
    url = database_url
    receiver.answer = lambda _request: (204, 0.01)
    settings = settings_for(receiver.url)
    small = with_webhooks(policy, batch=20, concurrency=4)
    engines = [make_engine(url), make_engine(url)]
    try:
        register(engines[0], settings, small)
        with engines[0].begin() as connection:
            ids = [add_event(connection)[1] for _ in range(300)]
        for engine in engines:  # connected before the start line
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        results: list[PushCounts] = []
        start = threading.Barrier(2, timeout=30)

        def replica(engine: Engine) -> None:
            start.wait()
            results.append(push(engine, settings, small, T0))

        threads = [threading.Thread(target=replica, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert sorted(ids) == sorted(receiver.ids())
        assert 300 == sum(r.delivered for r in results)
        assert all(r.delivered > 0 for r in results), "both replicas took part"
        with engines[0].connect() as connection:
            states = connection.execute(text(
                "SELECT status, count(*) FROM webhook_deliveries GROUP BY status")).all()
        assert [("delivered", 300)] == [tuple(s) for s in states]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_claim_takes_at_most_its_batch(engine: Engine, policy: Policy,
                                         receiver: Receiver) -> None:
    """On PostgreSQL a plain `IN (… FOR UPDATE SKIP LOCKED LIMIT n)` can claim every due
    row; the claim holds to its batch on both backends."""
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    for _ in range(12):
        add_event(engine)
    assert 12 == store_enqueue(engine, settings, policy)
    with engine.begin() as connection:
        first = store.claim(connection, ["default"], T0, now(), "a" * 32,
                            timedelta(minutes=5), 5)
        second = store.claim(connection, ["default"], T0, now(), "b" * 32,
                             timedelta(minutes=5), 50)
    assert (5, 7) == (len(first), len(second))
    assert not {c.id for c in first} & {c.id for c in second}


def test_the_lease_extension_keeps_its_own_rows_and_skips_one_being_written(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Every row of the token is extended, none of another token's; on PostgreSQL a
    row locked by the transaction writing its answer is skipped, not waited for (the
    wait, in another order than the writer's, could deadlock)."""
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    for _ in range(6):
        add_event(engine)
    store_enqueue(engine, settings, policy)
    lease = timedelta(minutes=5)
    with engine.begin() as connection:
        mine = store.claim(connection, ["default"], T0, now(), "a" * 32, lease, 4)
        store.claim(connection, ["default"], T0, now(), "b" * 32, lease, 2)
    later = now() + timedelta(minutes=30)
    with engine.begin() as connection:
        assert 4 == store.extend_lease(connection, "a" * 32, later)
    if engine.dialect.name != "postgresql":
        return  # SQLite locks the whole database, not rows
    with engine.connect() as writing:
        writing.begin()
        writing.execute(WEBHOOK_DELIVERIES.update().where(
            WEBHOOK_DELIVERIES.c.id == mine[0].id).values(attempts=1))
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert 3 == store.extend_lease(connection, "a" * 32, later + lease)
        writing.rollback()


class Refusal(Exception):
    """A write the database refuses for good (a bug): not waited out."""


def failing_writes(engine: Engine, error: Callable[[str], Exception]) -> threading.Event:
    """While the returned event is set, every write of answers raises `error(statement)`."""
    failing = threading.Event()
    failing.set()

    @event.listens_for(engine, "before_cursor_execute")
    def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if failing.is_set() and statement.startswith("UPDATE webhook_deliveries SET status"):
            raise error(statement)

    return failing


def pushed_in_thread(engine: Engine, settings: Settings, policy: Policy,
                     seconds: float) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def first_push() -> None:
        try:
            outcome["counts"] = push(engine, settings, policy, T0)
        except Exception as error:  # the test reads it
            outcome["error"] = error

    pushing = threading.Thread(target=first_push, daemon=True)
    pushing.start()
    pushing.join(timeout=seconds)
    return pushing, outcome


def test_a_database_away_while_answers_are_written_pauses_the_push_and_loses_nothing(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Writes of answers fail as a lost connection for a second, half-way through 1,500
    events: nothing new is pushed while the database is away, the answers in hand are
    written when it is back, and the push goes on: every event once, the outage logged
    once."""
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    for _ in range(1500):
        add_event(engine)
    away = failing_writes(engine, lambda statement: OperationalError(
        statement, None, ConnectionError("server closed the connection")))
    threading.Timer(1.0, away.clear).start()
    with structlog.testing.capture_logs() as logs:
        pushing, outcome = pushed_in_thread(engine, settings, policy, 60)
    assert not pushing.is_alive(), "the push waited for ever"
    assert 1500 == outcome["counts"].delivered
    assert 1500 == len(receiver.ids()) == len(set(receiver.ids()))
    rows = deliveries(engine)
    assert all(row.status == "delivered" and row.claim_token is None for row in rows)
    named = [entry["event"] for entry in logs]
    assert 1 == named.count("database_unavailable")
    assert 1 == named.count("database_available")


def test_a_write_refused_ends_the_push_at_once_and_a_later_push_delivers_the_rest(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """A write of answers refused for good ends the push with the error instead of
    waiting for ever on a queue nobody empties (what it did once every sender had died
    of a failed write); what it did not try is given back; a later push delivers every
    event, one pushed twice only under its one webhook-id."""
    settings = settings_for(receiver.url)
    register(engine, settings, policy)
    for _ in range(1500):
        add_event(engine)
    refused = failing_writes(engine, Refusal)
    pushing, outcome = pushed_in_thread(engine, settings, policy, 60)
    assert not pushing.is_alive(), "the push waited for ever"
    assert isinstance(outcome.get("error"), Refusal)
    assert 0 < len(receiver.ids()) < 1500
    refused.clear()
    later = now() + timedelta(minutes=10)  # past the lease of the answers not written
    push_due(engine, settings, policy, T0, clock=lambda: later)
    assert 1500 == len(set(receiver.ids()))
    rows = deliveries(engine)
    assert 1500 == len(rows)
    assert all(row.status == "delivered" and row.claim_token is None for row in rows)


def store_enqueue(engine: Engine, settings: Settings, policy: Policy) -> int:
    from worker.config.endpoints import configured_endpoints

    endpoints = configured_endpoints(settings, policy)
    horizon = store.safe_horizon(engine)
    assert horizon is not None
    with engine.begin() as connection:
        states = store.sync_endpoints(connection, endpoints, horizon, now())
        return store.enqueue(connection, endpoints, states, horizon, now())


def test_a_stop_request_ends_the_drain_and_gives_the_rest_back(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Shutdown: no new request after the stop; what was claimed and not tried is
    released at once (not left to its lease) and pushed by the next drain."""
    stop = threading.Event()

    def first_stops(_request: Any) -> tuple[int, float]:
        stop.set()
        return 204, 0.0

    receiver.answer = first_stops
    serial = with_webhooks(policy, concurrency=1)
    settings = settings_for(receiver.url)
    register(engine, settings, serial)
    for _ in range(5):
        add_event(engine)
    counts = push_due(engine, settings, serial, T0, clock=now, stop=stop)
    assert 1 == counts.delivered
    rows = deliveries(engine)
    assert ["delivered"] + ["pending"] * 4 == [row.status for row in rows]
    assert all(row.claim_token is None for row in rows)
    receiver.answer = lambda _request: (204, 0.0)
    assert 4 == push(engine, settings, serial, T0).delivered
    assert 5 == len(set(receiver.ids()))


def test_an_endpoint_that_keeps_timing_out_is_left_for_the_next_drain(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """Three timeouts in a row: the other deliveries to it wait, untried and unclaimed,
    instead of holding the drain for a timeout each."""
    receiver.answer = lambda _request: (204, 1.0)
    slow = with_webhooks(policy, timeout_seconds=0.2, concurrency=1)
    settings = settings_for(receiver.url)
    register(engine, settings, slow)
    for _ in range(8):
        add_event(engine)
    assert {"enqueued": 8, "retrying": 3} == push(engine, settings, slow, T0).as_dict()
    rows = deliveries(engine)
    assert ["retrying"] * 3 + ["pending"] * 5 == [row.status for row in rows]
    assert [1, 1, 1, 0, 0, 0, 0, 0] == [row.attempts for row in rows]
    assert all(row.claim_token is None for row in rows)


def test_a_command_registers_its_endpoints_before_it_writes_events(
    engine: Engine, policy: Policy, receiver: Receiver
) -> None:
    """`import`, `run --once` and `start` register first: the events of the very first
    run with WEBHOOK_URL set are pushed; those written before it are not."""
    add_event(engine)
    settings = settings_for(receiver.url)
    register_endpoints(engine, settings, policy, now())
    _, written_by_the_run = add_event(engine)
    assert 1 == push(engine, settings, policy, T0).delivered
    assert [written_by_the_run] == receiver.ids()
    register_endpoints(engine, Settings(), policy, now())  # none configured: nothing to do
