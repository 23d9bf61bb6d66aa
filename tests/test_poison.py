"""A poison pill ends: a row whose outcome the database always refuses to record is sent
at most `hold_after_unrecorded_claims` times, then held, counted and explained.

The refusal is a statement the database refuses for good (not an outage), raised by a
connection event on exactly the statement that records outcomes, on both backends.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date
from email import message_from_bytes
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import IntegrityError

from testkit.http import Receiver, running_receiver
from testkit.outbox import NOTIFICATIONS, queue_notice
from tests.import_samples import full_document, run
from tests.webhooks_helpers import T0, add_event, settings_for
from worker.config.policy import build_policy
from worker.config.settings import Settings
from worker.db.schema import WEBHOOK_DELIVERIES
from worker.mail.drain import deliver_due
from worker.mail.transports.memory import MemoryMailer
from worker.reports.history import history, history_table
from worker.reports.status import dashboard
from worker.service.metrics import exposition
from worker.webhooks.push import push_due, register_endpoints

POLICY = build_policy({})
HOLD_AFTER = POLICY.delivery.hold_after_unrecorded_claims


class Refusal(IntegrityError):
    def __init__(self) -> None:
        super().__init__("UPDATE …", {}, Exception("refused for good"))


def refuse_recording(engine: Engine, table: str, column: str) -> None:
    """Every statement that records an outcome (it sets `column`) is refused."""

    @event.listens_for(engine, "before_cursor_execute")
    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(f"UPDATE {table} SET") and column in statement:
            raise Refusal


def test_the_default_holds_after_three_claims() -> None:
    assert 3 == HOLD_AFTER == POLICY.webhooks.hold_after_unrecorded_claims


def test_a_notice_whose_outcome_is_always_refused_is_held_after_a_few_claims(
    engine: Engine,
) -> None:
    """Before: after a write refused for good, the same notices went out again at every
    drain, with no end. Now each goes out `hold_after` times, then the next claim holds
    it: `held`, with the reason, in `status`, the metrics and `history`."""
    run(engine, POLICY, full_document())  # subscription s1, whose story tells it
    ids = [queue_notice(engine, ref="s1", occasion_date=date(2027, 3, 10 + i))
           for i in range(3)]
    refuse_recording(engine, "notifications", "sent_at")
    mailer = MemoryMailer(concurrency=4)
    for _ in range(HOLD_AFTER):
        with pytest.raises(IntegrityError):
            deliver_due(engine, POLICY, Settings(), T0, clock=lambda: T0, mailer=mailer)
    after_last_send = len(mailer.delivered)
    for _ in range(3):  # the next drains hold them, then find nothing to do
        counts = deliver_due(engine, POLICY, Settings(), T0, clock=lambda: T0, mailer=mailer)
        assert 0 == counts.sent

    sent = Counter(str(message_from_bytes(d.data)["Message-ID"]) for d in mailer.delivered)
    assert len(ids) == len(sent)
    assert {HOLD_AFTER} == set(sent.values())
    assert after_last_send == len(mailer.delivered)
    with engine.connect() as connection:
        rows = connection.execute(select(NOTIFICATIONS.c.status, NOTIFICATIONS.c.last_error,
                                         NOTIFICATIONS.c.claim_token)).all()
        board = dashboard(connection)
        story = history(connection, "s1")
    assert {("held", None)} == {(r.status, r.claim_token) for r in rows}
    assert all("held: claimed 3 times without its outcome being recorded" in r.last_error
               for r in rows)
    assert 3 == board["notifications"]["held"]
    notices = [e for e in story["timeline"] if e["entry"] == "notice"]
    assert ["held"] * 3 == [notice["status"] for notice in notices]
    assert "why: held: claimed 3 times" in history_table(story)
    assert re.search(rb'worker_notifications\{kind="renewal_upcoming",status="held"\} 3',
                     exposition(engine, lambda: T0))


def test_notices_released_untried_are_not_counted_against_them(engine: Engine) -> None:
    """A stop gives back notices it never tried: however often that happens, they are
    not held (only a claim whose attempt went out unrecorded counts)."""
    queue_notice(engine, ref="s1")
    mailer = MemoryMailer(concurrency=1)
    for _ in range(HOLD_AFTER + 2):
        counts = deliver_due(engine, POLICY, Settings(), T0, clock=lambda: T0,
                             mailer=mailer, stop=lambda: True)
        assert 0 == counts.sent
    counts = deliver_due(engine, POLICY, Settings(), T0, clock=lambda: T0, mailer=mailer)
    assert 1 == counts.sent
    with engine.connect() as connection:
        row = connection.execute(select(NOTIFICATIONS.c.status,
                                        NOTIFICATIONS.c.unsettled_claims)).one()
    assert ("sent", 0) == (row.status, row.unsettled_claims)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def test_an_event_whose_answer_is_always_refused_is_held_after_a_few_claims(
    engine: Engine, receiver: Receiver,
) -> None:
    """The same for the portal's events: pushed `hold_after` times, then held."""
    settings = settings_for(receiver.url)
    register_endpoints(engine, settings, POLICY, T0)
    seqs = [add_event(engine, id=f"s{i}")[0] for i in range(2)]
    refuse_recording(engine, "webhook_deliveries", "delivered_at")
    for _ in range(HOLD_AFTER):
        with pytest.raises(IntegrityError):
            push_due(engine, settings, POLICY, T0, clock=lambda: T0)
    for _ in range(2):
        push_due(engine, settings, POLICY, T0, clock=lambda: T0)
    assert {HOLD_AFTER} == set(Counter(receiver.ids()).values())
    assert len(seqs) == len(set(receiver.ids()))
    with engine.connect() as connection:
        statuses = connection.execute(select(WEBHOOK_DELIVERIES.c.status)).scalars().all()
        board = dashboard(connection)
    assert ["held", "held"] == statuses
    assert 2 == board["webhooks"]["deliveries"].get("held")
