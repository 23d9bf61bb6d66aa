"""Events: one per change, written in the change's transaction, on both backends."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text, update

from testkit.outbox import queue_notice
from tests.portfolio import as_json, portfolio
from worker.config.policy import Policy, build_policy
from worker.config.settings import Settings
from worker.db.schema import (
    EVENTS,
    NOTIFICATIONS,
    TRANSITIONS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
)
from worker.drain.schedule import RetrySchedule
from worker.events import PersonStateChange, insert_events, record_account_states
from worker.events.build import account_state_event, event_type
from worker.events.feed import events_after, events_between, events_by_seq, feed_page
from worker.events.write import EVENTS_LOCK
from worker.importing.load import import_data
from worker.mail.decisions import settle
from worker.mail.drain import deliver_due
from worker.mail.store import claim, write_settlements
from worker.mail.transports.base import Outcome, Reply, Verdict
from worker.mail.transports.memory import MemoryMailer, Script
from worker.passes import effects
from worker.passes import run as passes
from worker.passes.run import run_pass
from worker.reports.history import UnknownRecord, history, history_table

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Paris
POLICY = build_policy({})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(engine: Engine, policy: Policy, data: dict[str, Any] | None = None) -> None:
    import_data(engine, as_json(data or portfolio()), policy, started_at=datetime.now(UTC))


def events(engine: Engine, *types: str) -> list[Any]:
    with engine.connect() as connection:
        query = select(EVENTS).order_by(EVENTS.c.seq)
        if types:
            query = query.where(EVENTS.c.type.in_(types))
        return list(connection.execute(query))


def data_of(engine: Engine, event_type_: str, subject: str) -> list[dict[str, Any]]:
    return [row.data for row in events(engine, event_type_) if row.subject_id == subject]


def deliver(engine: Engine, mailer: Any, moment: datetime = T, **options: Any) -> Any:
    return deliver_due(engine, POLICY, Settings(), moment, clock=lambda: moment,
                       mailer=mailer, **options)


# --- each type ------------------------------------------------------------------------


def test_a_subscription_status_change_tells_its_customer_reseller_and_anniversary(
    engine: Engine, policy: Policy
) -> None:
    """AD - 45 for s1 (AD 2027-03-15): one event with the CONTRACT's fields."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    moves = data_of(engine, "subscription.status_changed", "s1")
    assert {"id": "s1", "customer_id": "c1", "reseller_id": "r1", "from": "active",
            "to": "renewal_upcoming", "effective_on": "2027-01-29",
            "reason": "renewal_upcoming", "anniversary_date": "2027-03-15"} == moves[-1]
    [row] = [r for r in events(engine, "subscription.status_changed")
             if r.subject_id == "s1" and r.data["to"] == "renewal_upcoming"]
    assert (at("2027-02-05T10:00:00Z"), "subscription", "r1") == (
        row.occurred_at, row.subject_type, row.reseller_id)
    assert row.id.startswith("evt_")
    assert len(row.id) <= 40


def test_payment_standing_and_the_effective_account_state_move_together(
    engine: Engine, policy: Policy
) -> None:
    """Day 31 late, day 61 suspended (the account too); paid: current and active again."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    paid = {"purchase_authorizations": [{"id": "pa1", "paid_on": "2027-03-21"}]}
    import_data(engine, as_json(paid), policy, started_at=datetime.now(UTC))
    run_pass(engine, policy, at("2027-03-22T10:00:00Z"))
    standing = data_of(engine, "customer.payment_standing_changed", "c1")
    account = data_of(engine, "customer.account_state_changed", "c1")
    assert [("current", "late", "2027-02-02"), ("late", "suspended", "2027-03-04"),
            ("suspended", "current", "2027-03-21")] == [
        (d["from"], d["to"], d["effective_on"]) for d in standing]
    assert {"id": "c1", "reseller_id": "r1"}.items() <= standing[0].items()
    assert [("active", "suspended", "2027-03-04"), ("suspended", "active", "2027-03-21")] == [
        (d["from"], d["to"], d["effective_on"]) for d in account]
    assert {"id": "c1", "reseller_id": "r1", "cause": "payment_standing"}.items() <= \
        account[0].items()


def test_a_person_suspension_keeps_the_account_suspended_whatever_the_payments(
    engine: Engine, policy: Policy
) -> None:
    """The effective state is already suspended: payment moves emit no account event."""
    data = portfolio()
    data["customers"][0]["account_state"] = "suspended"
    load(engine, policy, data)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    assert [] == data_of(engine, "customer.account_state_changed", "c1")
    assert 2 == len(data_of(engine, "customer.payment_standing_changed", "c1"))


def test_an_import_changing_the_persons_state_can_record_its_event(engine: Engine) -> None:
    """The function the import calls: an event when the effective state moves, else none."""
    with engine.begin() as connection:
        moved = record_account_states(connection, [
            PersonStateChange("c9", "r1", "active", "suspended", "current"),
            PersonStateChange("c8", "r1", "active", "updating", "suspended"),
            PersonStateChange("c7", "r1", "active", "active", "current")], T)
    [row] = events(engine, "customer.account_state_changed")
    assert ({"id": "c9", "reseller_id": "r1", "from": "active", "to": "suspended",
             "effective_on": "2027-03-10", "cause": "person"}, T) == (row.data, row.occurred_at)
    assert moved[0]["id"] == row.id


def test_an_expired_code_tells_its_customer_and_reseller(engine: Engine, policy: Policy) -> None:
    load(engine, policy)
    run_pass(engine, policy, at("2027-01-13T09:30:00Z"))
    [data] = data_of(engine, "reseller_change_code.status_changed", "k1")
    assert {"id": "k1", "customer_id": "c2", "reseller_id": "r2", "from": "active",
            "to": "expired", "effective_at": "2027-01-13T09:30:00+00:00",
            "reason": "expired"}.items() <= data.items()


def test_a_sent_notice_has_one_event_with_its_message_id_and_recipients(engine: Engine) -> None:
    notification_id = queue_notice(engine, recipients=("a@x.example", "b@x.example"))
    mailer = MemoryMailer()
    deliver(engine, mailer)
    deliver(engine, mailer, T + timedelta(hours=1))
    [row] = events(engine)
    with engine.connect() as connection:
        message_id = connection.scalar(select(NOTIFICATIONS.c.message_id)
                                       .where(NOTIFICATIONS.c.id == notification_id))
    assert ("notification.sent", notification_id, T) == (
        row.type, row.notification_id, row.occurred_at)
    assert {"kind": "renewal_upcoming", "ref": "s1", "audience": "customer",
            "recipients": ["a@x.example", "b@x.example"],
            "message_id": message_id}.items() <= row.data.items()


def test_failed_and_dead_notices_have_their_event_and_retries_none(engine: Engine) -> None:
    """550 fails at once; 451 retries (no event) until the schedule runs out (dead)."""
    failed = queue_notice(engine, ref="f", recipients=("gone@x.example",))
    dead = queue_notice(engine, ref="d", recipients=("later@x.example",))
    mailer = MemoryMailer(Script(rcpt={"gone@x.example": 550, "later@x.example": 451}))
    retry = RetrySchedule.from_minutes([5])
    deliver(engine, mailer, retry=retry)
    assert [("notification.failed", failed)] == [
        (r.type, r.notification_id) for r in events(engine)]
    deliver(engine, mailer, T + timedelta(minutes=5), retry=retry)
    assert [("notification.failed", failed), ("notification.dead", dead)] == [
        (r.type, r.notification_id) for r in events(engine)]
    assert "dead" == events(engine)[-1].data["recipient_results"]["later@x.example"]["status"]


def test_overtaken_and_skipped_notices_have_a_cancelled_event(
    engine: Engine, policy: Policy
) -> None:
    """A renewal recorded cancels the waiting notices; a digest past its date is skipped."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    renewal = {"id": "s1", "renewal": {"ordered_on": "2027-02-06", "years": 1}}
    import_data(engine, as_json({"subscriptions": [renewal]}), policy, started_at=datetime.now(UTC))
    run_pass(engine, policy, at("2027-02-06T10:00:00Z"))
    cancelled = events(engine, "notification.cancelled")
    assert {("renewal_upcoming", "s1", "customer"), ("renewal_upcoming", "s1", "reseller")} == {
        (r.data["kind"], r.data["ref"], r.data["audience"]) for r in cancelled}
    assert {at("2027-02-06T10:00:00Z")} == {r.occurred_at for r in cancelled}
    digest = queue_notice(engine, kind="reseller_digest", audience="reseller", ref="r1",
                          occasion_date=date(2027, 3, 9))
    deliver(engine, MemoryMailer())
    with engine.connect() as connection:
        cancelled_ids = list(connection.scalars(
            select(NOTIFICATIONS.c.id).where(NOTIFICATIONS.c.status == "cancelled")
            .order_by(NOTIFICATIONS.c.id)))
    assert digest in cancelled_ids
    assert cancelled_ids == sorted(r.notification_id
                                   for r in events(engine, "notification.cancelled"))


def test_a_notice_settled_twice_or_cancelled_in_flight_gets_no_second_event(
    engine: Engine
) -> None:
    """Two processes recording one `sent` add one event; a failure that did not apply
    (the notice was cancelled meanwhile) adds none."""
    sent_id, failed_id = queue_notice(engine, ref="s"), queue_notice(engine, ref="f")
    with engine.begin() as connection:
        sent, failed = claim(connection, T, T, "t" * 32, timedelta(minutes=5), 10)
        connection.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == failed_id)
                           .values(status="cancelled"))
    accepted = Outcome((Reply("paul@dupont.example", Verdict.ACCEPTED, 250, "ok"),))
    refused = Outcome((Reply("paul@dupont.example", Verdict.PERMANENT, 550, "no"),))
    for _ in range(2):
        with engine.begin() as connection:
            write_settlements(connection, [settle(sent, accepted, T, T, RetrySchedule()),
                                           settle(failed, refused, T, T, RetrySchedule())], T)
    assert [("notification.sent", sent_id)] == [
        (r.type, r.notification_id) for r in events(engine)]


def test_every_audit_pair_has_a_type_of_its_own_or_a_generic_one() -> None:
    assert "subscription.status_changed" == event_type("subscription", "status")
    assert "reseller_change_code.status_changed" == event_type("code", "status")
    assert "customer.invitation_status_changed" == event_type("customer", "invitation_status")
    assert account_state_event("c", "r", ("active", "late"), ("active", "current"), T,
                               cause="payment_standing") is None


# --- once, and only with the change ---------------------------------------------------


def audit_and_events(engine: Engine) -> tuple[list[int], list[tuple[int, int]]]:
    with engine.connect() as connection:
        transitions = list(connection.scalars(select(TRANSITIONS.c.id).order_by(TRANSITIONS.c.id)))
        linked = connection.execute(select(EVENTS.c.seq, EVENTS.c.transition_id)
                                    .where(EVENTS.c.transition_id.is_not(None))
                                    .order_by(EVENTS.c.seq)).all()
    return transitions, [(row.seq, row.transition_id) for row in linked]


def assert_one_event_per_audit_row_in_order(engine: Engine) -> None:
    transitions, linked = audit_and_events(engine)
    assert transitions == [transition_id for _, transition_id in linked]


def test_a_chunk_rolled_back_leaves_neither_its_changes_nor_their_events(
    engine: Engine, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault after the second chunk's events are written: the first chunk keeps its
    changes and events, the second has neither."""
    load(engine, policy)
    monkeypatch.setattr(passes, "CHUNK", 2)
    real = effects.write_events
    calls = []

    def failing(connection: Any, written: Any) -> None:
        real(connection, written)
        calls.append(len(written.events))
        if len(calls) == 2:
            raise RuntimeError("fault injected after the events were written")

    monkeypatch.setattr(passes, "write_events", failing)
    with pytest.raises(passes.PassFailed, match="fault injected"):
        run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    transitions, linked = audit_and_events(engine)
    assert calls[1] > 0
    assert {"s1", "s2"} == {r.subject_id for r in events(engine)}
    assert transitions == [transition_id for _, transition_id in linked]
    assert calls[0] == len(events(engine))
    monkeypatch.setattr(passes, "write_events", real)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    assert_one_event_per_audit_row_in_order(engine)
    assert {"s1", "s2", "s3"} <= {r.subject_id for r in events(engine)}


def test_a_dry_run_lists_the_events_a_pass_would_emit_and_writes_none(
    engine: Engine, policy: Policy
) -> None:
    load(engine, policy)
    moment = at("2027-03-20T10:00:00Z")
    dry = run_pass(engine, policy, moment, dry_run=True)
    assert [] == events(engine)
    real = run_pass(engine, policy, moment)
    written = [(r.type, r.subject_id, r.data) for r in events(engine)]
    assert written == [(e["type"], e["subject_id"], e["data"]) for e in dry.events]
    assert written == [(e["type"], e["subject_id"], e["data"]) for e in real.events]
    assert {"subscription.status_changed", "customer.payment_standing_changed",
            "customer.account_state_changed", "reseller_change_code.status_changed"} == {
        e["type"] for e in dry.as_json()["events"]}


def test_a_second_pass_at_the_same_moment_adds_no_event(engine: Engine, policy: Policy) -> None:
    load(engine, policy)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    before = len(events(engine))
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    assert before == len(events(engine))
    assert_one_event_per_audit_row_in_order(engine)


def test_replicas_passing_at_once_write_each_event_once_and_in_order(
    engine: Engine, policy: Policy
) -> None:
    """Three passes at the same moment in three threads (replicas): every audit row has
    exactly one event, and the feed's order is the audit trail's."""
    load(engine, policy)
    failures: list[BaseException] = []

    def one_pass() -> None:
        try:
            run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=one_pass, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [] == failures
    assert not any(thread.is_alive() for thread in threads)
    transitions, linked = audit_and_events(engine)
    assert sorted(transitions) == sorted(transition_id for _, transition_id in linked)
    assert len(linked) == len({transition_id for _, transition_id in linked})
    # Within one transaction the feed keeps the audit trail's order; between concurrent
    # ones it is the order of commit (audit ids are drawn before it).
    with engine.connect() as connection:
        chunks = dict(connection.execute(select(TRANSITIONS.c.id, TRANSITIONS.c.pass_id)
                                         .join(EVENTS, EVENTS.c.transition_id == TRANSITIONS.c.id)
                                         ).tuples().all())
    for pass_id in set(chunks.values()):
        mine = [transition_id for _, transition_id in linked if chunks[transition_id] == pass_id]
        assert mine == sorted(mine)
    assert 13 == len(events(engine, "subscription.status_changed"))


# --- the feed -------------------------------------------------------------------------


def test_the_feed_pages_in_seq_order_and_selects_by_seq_and_period(
    engine: Engine, policy: Policy
) -> None:
    load(engine, policy)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    created = events(engine)[0].created_at
    with engine.connect() as connection:
        everything = [row.seq for row in events_after(connection, 0, 1000)]
        first = feed_page(connection, 0, 5)
        rest = feed_page(connection, first["next_after"], 1000)
        chosen, missing = events_by_seq(connection, [everything[2], everything[0], 999_999])
        period = events_between(connection, created - timedelta(seconds=1),
                                created + timedelta(seconds=1))
        empty = events_between(connection, created + timedelta(days=1),
                               created + timedelta(days=2))
    assert everything == sorted(everything)
    assert len(everything) > 5
    assert everything == [e["seq"] for e in first["events"] + rest["events"]]
    assert (True, False) == (first["more"], rest["more"])
    assert ([everything[0], everything[2]], [999_999]) == ([r.seq for r in chosen], missing)
    assert everything == [row.seq for row in period]
    assert [] == empty


# --- seq order a poller can trust (PostgreSQL) ------------------------------------------


def a_row(customer_id: str) -> dict[str, Any]:
    row = account_state_event(customer_id, "r1", ("active", "current"),
                              ("suspended", "current"), T, cause="person")
    assert row is not None
    return row


def waiting_for_the_feed_lock(engine: Engine) -> bool:
    """True once some session waits for the feed's advisory lock (bounded polling)."""
    deadline = time.monotonic() + 10
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.scalar(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = :key"), {"key": EVENTS_LOCK})
            connection.rollback()
            if waiting:
                return True
            time.sleep(0.02)
    return False


def visible_seqs(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return [row.seq for row in events_after(connection, 0, 100)]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_later_event_never_becomes_visible_before_an_earlier_one(engine: Engine) -> None:
    """Two transactions writing events: the second waits for the first to commit, so a
    poller never sees seq n+1 while seq n may still appear (it would skip it for ever)."""
    first = engine.connect()
    first.begin()
    [mine] = insert_events(first, [a_row("c1")], T)
    done = threading.Event()
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as connection:
                insert_events(connection, [a_row("c2")], T)
        except BaseException as error:
            failures.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    try:
        assert waiting_for_the_feed_lock(engine)
        assert [] == visible_seqs(engine)
        first.commit()
    finally:
        first.close()
    assert done.wait(10)
    thread.join(timeout=10)
    assert [] == failures
    seqs = visible_seqs(engine)
    assert 2 == len(seqs)
    assert seqs == sorted(seqs)
    assert [mine["id"]] == [r.id for r in events(engine) if r.seq == seqs[0]]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_without_the_lock_a_poller_would_skip_an_event(engine: Engine) -> None:
    """The control: plain inserts let seq n+1 commit and show while seq n is in flight."""
    first = engine.connect()
    first.begin()
    try:
        first.execute(insert(EVENTS), [{**a_row("c1"), "id": "evt_first", "created_at": T}])
        with engine.begin() as connection:
            connection.execute(insert(EVENTS), [{**a_row("c2"), "id": "evt_second",
                                                 "created_at": T}])
        [seen] = visible_seqs(engine)
        first.commit()
    finally:
        first.close()
    earlier = min(visible_seqs(engine))
    assert earlier < seen  # a cursor moved to `seen` would never read `earlier`


# --- history ----------------------------------------------------------------------------


def test_history_shows_each_events_webhook_deliveries(engine: Engine, policy: Policy) -> None:
    """No endpoint: no delivery; with one, each event lists its deliveries (leases left
    out) and the table says how each ended."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    with engine.connect() as connection:
        before = history(connection, "k1")
    [event] = [e for e in before["timeline"] if e["entry"] == "event"]
    assert [] == event["deliveries"]
    moment = at("2027-03-20T10:00:00Z")
    with engine.begin() as connection:
        connection.execute(WEBHOOK_ENDPOINTS.insert().values(
            name="portal", url="https://portal.example/hooks", first_seq=0,
            enqueued_through=event["seq"], created_at=moment))
        connection.execute(WEBHOOK_DELIVERIES.insert().values(
            event_seq=event["seq"], endpoint="portal", status="delivered", attempts=2,
            claim_token="x", created_at=moment, delivered_at=moment, last_status=204))
    with engine.connect() as connection:
        after = history(connection, "k1")
    [event] = [e for e in after["timeline"] if e["entry"] == "event"]
    [delivery] = event["deliveries"]
    assert ("portal", "delivered", 2, 204) == (delivery["endpoint"], delivery["status"],
                                               delivery["attempts"], delivery["last_status"])
    assert "claim_token" not in delivery
    assert "delivery to portal: delivered after 2 attempt(s)" in history_table(after)


def test_history_tells_a_subscription_in_order_and_refuses_an_unknown_id(
    engine: Engine, policy: Policy
) -> None:
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    deliver(engine, MemoryMailer(), at("2027-02-05T10:00:00Z"))
    with engine.connect() as connection:
        story = history(connection, "s1")
        with pytest.raises(UnknownRecord, match="'nobody'"):
            history(connection, "nobody")
    kinds = [(e["entry"], e.get("to") or e.get("kind") or e.get("type")) for e in
             story["timeline"]]
    assert [("change", "active"), ("event", "subscription.status_changed"),
            ("change", "renewal_upcoming"), ("event", "subscription.status_changed"),
            ("notice", "renewal_upcoming"), ("event", "notification.sent"),
            ("notice", "renewal_upcoming"), ("event", "notification.sent")] == kinds
    notice = story["timeline"][4]
    assert [{"address": "paul@dupont.example", "status": "sent", "code": 250}] == [
        {k: r[k] for k in ("address", "status", "code")} for r in notice["recipients"]]
