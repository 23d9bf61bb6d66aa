"""Property: whatever the history of imports, passes and deliveries, every row of the audit
trail has exactly one event, in the order of the audit trail, with the row's values; and
every notice in a final delivery state has exactly one event, of that state.

Histories start from tests/portfolio.py's portfolio and re-import random facts (payments,
new purchase authorizations, renewals, a person's account state, a code's use) between
passes at irregular moments, as a portal would. SQLite, one fresh file per example (a
copy of one migrated file).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from tests.portfolio import as_json, portfolio
from worker.config.policy import load_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.db.schema import EVENTS, NOTIFICATIONS, TRANSITIONS
from worker.drain.schedule import RetrySchedule
from worker.events.build import NOTIFICATION_FINAL, event_type
from worker.importing.load import import_data
from worker.mail.drain import deliver_due
from worker.mail.transports.memory import MemoryMailer, Script
from worker.passes.run import run_pass

POLICY = load_policy()
START = datetime(2027, 1, 3, 9, 0, tzinfo=UTC)
SUBSCRIPTIONS = ("s1", "s2", "s3")
CUSTOMERS = ("c1", "c2", "c3")


def day(offset: int) -> str:
    return (START.date() + timedelta(days=offset)).isoformat()


facts = st.one_of(
    st.builds(lambda pa, n: {"purchase_authorizations": [{"id": pa, "paid_on": day(n)}]},
              st.just("pa1"), st.integers(0, 120)),
    st.builds(lambda n, c, r: {"purchase_authorizations": [
        {"id": f"pa-{n}", "customer_id": c, "requested_on": day(r), "paid_on": None}]},
        st.integers(2, 9), st.sampled_from(CUSTOMERS), st.integers(-60, 60)),
    st.builds(lambda s, n, y: {"subscriptions": [
        {"id": s, "renewal": {"ordered_on": day(n), "years": y}}]},
        st.sampled_from(SUBSCRIPTIONS), st.integers(0, 120), st.integers(1, 2)),
    st.builds(lambda s, auto: {"subscriptions": [{"id": s, "auto_renew": auto}]},
              st.sampled_from(SUBSCRIPTIONS), st.booleans()),
    st.builds(lambda c, state: {"customers": [{"id": c, "account_state": state}]},
              st.sampled_from(CUSTOMERS), st.sampled_from(["active", "suspended", "updating"])),
    st.builds(lambda hours: {"reseller_change_codes": [
        {"id": "k1", "used_at": (datetime(2027, 1, 10, 9, 30, tzinfo=UTC)
                                 + timedelta(hours=hours)).isoformat()}]},
        st.integers(1, 100)),
)
steps = st.lists(st.one_of(
    st.tuples(st.just("import"), facts),
    st.tuples(st.just("pass"), st.integers(1, 40), st.integers(0, 23)),
    st.tuples(st.just("deliver"), st.sampled_from([{}, {"paul@dupont.example": 550},
                                                   {"ann@harbour.example": 451}])),
), min_size=1, max_size=8)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events-template") / "worker.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events-histories")


def fresh(template: Path, workdir: Path) -> Iterator[Engine]:
    path = workdir / "history.db"
    for leftover in workdir.glob("history.db*"):
        leftover.unlink()
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()


def clock_at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def play(engine: Engine, history: list[tuple[Any, ...]]) -> None:
    import_data(engine, as_json(portfolio()), POLICY, started_at=datetime.now(UTC))
    moment = START
    for step in history:
        if step[0] == "import":
            import_data(engine, as_json(step[1]), POLICY, started_at=datetime.now(UTC))
        elif step[0] == "pass":
            moment = moment.replace(hour=step[2]) + timedelta(days=step[1])
            run_pass(engine, POLICY, moment)
        else:
            deliver_due(engine, POLICY, Settings(), moment, clock=clock_at(moment),
                        mailer=MemoryMailer(Script(rcpt=step[1])),
                        retry=RetrySchedule.from_minutes([1]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=steps)
def test_every_audit_row_and_every_final_notice_has_exactly_one_event_in_order(
    template: Path, workdir: Path, history: list[tuple[Any, ...]]
) -> None:
    for engine in fresh(template, workdir):
        play(engine, history)
        run_pass(engine, POLICY, START + timedelta(days=400))
        with engine.connect() as connection:
            audit = connection.execute(select(TRANSITIONS).order_by(TRANSITIONS.c.id)).all()
            feed = connection.execute(select(EVENTS).order_by(EVENTS.c.seq)).all()
            notices = connection.execute(select(NOTIFICATIONS.c.id, NOTIFICATIONS.c.status)
                                         .where(NOTIFICATIONS.c.status.in_(NOTIFICATION_FINAL))
                                         ).all()
    told = [event for event in feed if event.transition_id is not None]
    assert [row.id for row in audit] == [event.transition_id for event in told]
    for row, event in zip(audit, told, strict=True):
        assert (event_type(row.record_type, row.field), row.record_id, row.from_value,
                row.to_value, row.effective_on.isoformat()) == (
            event.type, event.subject_id, event.data["from"], event.data["to"],
            event.data["effective_on"])
    settled = sorted((event.notification_id, event.type) for event in feed
                     if event.notification_id is not None)
    assert sorted((row.id, f"notification.{row.status}") for row in notices) == settled
    assert [event.seq for event in feed] == sorted({event.seq for event in feed})


def test_the_history_generator_reaches_every_kind_of_event(template: Path,
                                                           workdir: Path) -> None:
    """The property is not vacuous: one fixed history yields every type but `dead`."""
    history: list[tuple[Any, ...]] = [
        ("pass", 30, 9), ("deliver", {"paul@dupont.example": 550}),
        ("import", {"purchase_authorizations": [{"id": "pa1", "paid_on": day(80)}]}),
        ("pass", 70, 10), ("deliver", {}), ("pass", 1, 7), ("deliver", {}),
    ]
    for engine in fresh(template, workdir):
        play(engine, history)
        with engine.connect() as connection:
            types = set(connection.scalars(select(EVENTS.c.type)))
    assert {"subscription.status_changed", "customer.payment_standing_changed",
            "customer.account_state_changed", "reseller_change_code.status_changed",
            "notification.sent", "notification.failed", "notification.cancelled"} <= types
