"""A pass over a real database (SQLite file and PostgreSQL): once means once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select, text, update

from tests.portfolio import as_json, portfolio
from worker.config.policy import Policy
from worker.db.schema import NOTIFICATIONS, PASSES, SUBSCRIPTIONS, TRANSITIONS
from worker.importing.load import import_data
from worker.passes.run import run_pass
from worker.reports.export import export_state


def at(text_moment: str) -> datetime:
    return datetime.fromisoformat(text_moment.replace("Z", "+00:00"))


def load(engine: Engine, policy: Policy, data: dict[str, Any] | None = None) -> None:
    import_data(engine, as_json(data or portfolio()), policy, started_at=datetime.now(UTC))


def notices(engine: Engine) -> list[tuple[str, str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(NOTIFICATIONS.c.kind, NOTIFICATIONS.c.ref,
                                         NOTIFICATIONS.c.audience, NOTIFICATIONS.c.status)
                                  .order_by(NOTIFICATIONS.c.id))
        return [(row.kind, row.ref, row.audience, row.status) for row in rows]


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(SUBSCRIPTIONS.c.id, SUBSCRIPTIONS.c.status,
                                         SUBSCRIPTIONS.c.anniversary_date))
        return {row.id: (row.status, row.anniversary_date.isoformat()) for row in rows}


def test_a_second_pass_at_the_same_moment_changes_nothing(engine: Engine, policy: Policy) -> None:
    """Idempotency is the database's: re-running a pass queues and records nothing new."""
    load(engine, policy)
    first = run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    before = notices(engine)
    second = run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    assert sum(first.queued.values()) > 0
    assert dict(second.queued) == {}
    assert dict(second.changes) == {}
    assert before == notices(engine)


def test_notices_go_to_admins_and_to_the_account_manager_or_the_reseller(
    engine: Engine, policy: Policy
) -> None:
    """Customer mail goes to the admins; reseller mail to the account manager, else the reseller."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    with engine.connect() as connection:
        state = export_state(connection)
    upcoming = {(n["ref"], n["audience"]): n["recipients"] for n in state["notifications"]
                if n["kind"] in ("renewal_upcoming", "renewal_window_open")}
    assert upcoming[("s1", "customer")] == ["paul@dupont.example"]
    assert upcoming[("s1", "reseller")] == ["lea@nuage.example"]
    assert upcoming[("s2", "customer")] == ["ann@harbour.example", "bo@harbour.example"]
    assert upcoming[("s2", "reseller")] == ["desk@maple.example"]


def test_a_dry_run_writes_nothing_at_all(engine: Engine, policy: Policy) -> None:
    """--dry-run lists what it would do and leaves no trace, not even a pass record."""
    load(engine, policy)
    summary = run_pass(engine, policy, at("2027-03-20T10:00:00Z"), dry_run=True)
    assert summary.notices
    assert summary.transitions
    assert notices(engine) == []
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(PASSES)) == 0
        assert connection.scalar(select(func.count()).select_from(TRANSITIONS)) == 0
    assert {"pending_start"} == {status for status, _ in statuses(engine).values()}


def test_a_broken_record_is_named_and_skipped_while_the_others_go_on(
    engine: Engine, policy: Policy
) -> None:
    """Data written by another system that the rules cannot read never stops a pass."""
    load(engine, policy)
    with engine.begin() as connection:
        connection.execute(update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == "s2")
                           .values(current_term_months=0))
    summary = run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    assert [error["id"] for error in summary.errors] == ["s2"]
    assert statuses(engine)["s1"][0] == "renewal_upcoming"
    with engine.connect() as connection:
        error = connection.scalar(select(SUBSCRIPTIONS.c.error)
                                  .where(SUBSCRIPTIONS.c.id == "s2"))
    assert error is not None
    assert "term" in error


def test_a_renewal_arriving_overtakes_a_queued_renewal_notice(
    engine: Engine, policy: Policy
) -> None:
    """A notice still waiting in the outbox when a renewal is recorded is cancelled, not sent."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"))
    renewal = {"id": "s1", "renewal": {"ordered_on": "2027-02-06", "years": 1}}
    import_data(engine, as_json({"subscriptions": [renewal]}), policy, started_at=datetime.now(UTC))
    summary = run_pass(engine, policy, at("2027-02-06T10:00:00Z"))
    rows = [n for n in notices(engine) if n[1] == "s1"]
    assert {("renewal_upcoming", "cancelled"), ("renewal_confirmed", "queued")} == {
        (kind, status) for kind, _, _, status in rows}
    assert summary.cancelled == 2
    assert statuses(engine)["s1"] == ("renewed", "2027-03-15")


def test_the_same_utc_instant_is_a_different_day_for_auckland_and_los_angeles(
    engine: Engine, policy: Policy
) -> None:
    """2027-03-01T02:00Z is 28 February in Los Angeles and 1 March in Auckland."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-03-01T02:00:00Z"))
    state = statuses(engine)
    assert state["s2"] == ("ready_for_renewal", "2027-03-01")  # LA: AD tomorrow
    assert state["s3"] == ("grace", "2027-03-01")  # Auckland: AD today, no renewal


def test_the_digest_goes_out_once_per_local_day_from_eight(
    engine: Engine, policy: Policy
) -> None:
    """Paris at 07:59 local gets nothing; at 08:00 one digest; later that day no second one."""
    load(engine, policy)
    run_pass(engine, policy, at("2027-02-05T06:59:00Z"))  # 07:59 in Paris
    assert not [n for n in notices(engine) if n[:2] == ("reseller_digest", "r1")]
    run_pass(engine, policy, at("2027-02-05T07:00:00Z"))
    run_pass(engine, policy, at("2027-02-05T18:00:00Z"))
    assert len([n for n in notices(engine) if n[:2] == ("reseller_digest", "r1")]) == 1
    run_pass(engine, policy, at("2027-02-06T09:00:00Z"))
    assert len([n for n in notices(engine) if n[:2] == ("reseller_digest", "r1")]) == 2


def test_a_payment_never_lifts_a_suspension_a_person_made(engine: Engine, policy: Policy) -> None:
    """The exported account state is suspended while a person says so, paid or not."""
    data = portfolio()
    data["customers"][0]["account_state"] = "suspended"
    load(engine, policy, data)
    run_pass(engine, policy, at("2027-03-20T10:00:00Z"))
    paid = {"purchase_authorizations": [{"id": "pa1", "paid_on": "2027-03-21"}]}
    import_data(engine, as_json(paid), policy, started_at=datetime.now(UTC))
    run_pass(engine, policy, at("2027-03-22T10:00:00Z"))
    with engine.connect() as connection:
        customer = next(c for c in export_state(connection)["customers"] if c["id"] == "c1")
    assert (customer["payment_standing"], customer["account_state"]) == ("current", "suspended")


def test_two_concurrent_passes_never_queue_a_notice_twice(
    engine: Engine, policy: Policy
) -> None:
    """Replicas may overlap: the unique key and row claims keep every notice single."""
    load(engine, policy)
    moment = at("2027-03-20T10:00:00Z")
    failures: list[BaseException] = []

    def one_pass() -> None:
        try:
            run_pass(engine, policy, moment)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=one_pass) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with engine.connect() as connection:
        duplicates = connection.execute(text(
            "SELECT kind, ref, occasion, audience, count(*) FROM notifications "
            "GROUP BY kind, ref, occasion, audience HAVING count(*) > 1")).all()
        transitions = connection.execute(text(
            "SELECT record_id, to_value, effective_on, count(*) FROM transitions "
            "GROUP BY record_id, to_value, effective_on HAVING count(*) > 1")).all()
    assert duplicates == []
    assert transitions == []


def test_the_pass_record_keeps_the_moment_and_the_counts(engine: Engine, policy: Policy) -> None:
    """Operators can see which passes ran, as of when, and what they did."""
    load(engine, policy)
    real = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    run_pass(engine, policy, at("2027-02-05T10:00:00Z"), clock=lambda: real)
    with engine.connect() as connection:
        row = connection.execute(select(PASSES)).one()
    assert (at("2027-02-05T10:00:00Z"), real, "done") == (row.as_of, row.started_at, row.outcome)
    assert row.counts["queued"]["renewal_upcoming"] == 2
