"""A portal may re-send its whole state at any moment: properties over generated
portfolios and random histories of imports and passes (README, "Import format").

* importing the same file again, at any point, changes nothing then and in every later
  pass (the export compared field by field, notifications included), also after a
  history of other files that changed terms, pending changes, renewals and ADs;
* one file imported whole, in chunks, or with its records and sections shuffled leaves
  the same state after the same passes;
* `forecast` from a day lists exactly the notices and changes that daily passes at the
  forecast hour then make;
* a dry-run pass lists exactly what the real pass at the same moment then does.

They call the Python entry points on SQLite files (the schema made once and copied per
example); one re-import history also runs on PostgreSQL.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from tests.portfolio import BASE
from tests.test_properties import REQUESTS_FROM, invoice_books, subscriptions
from worker.config.policy import load_policy
from worker.db.engine import make_engine
from worker.db.schema import metadata
from worker.importing.load import import_data
from worker.passes.run import run_pass
from worker.reports.export import export_state
from worker.reports.forecast import forecast
from worker.rules.subscriptions import SubscriptionState

POLICY = load_policy()
HISTORIES = settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
FORECASTS = settings(HISTORIES, max_examples=6)
CUSTOMERS = [customer["id"] for customer in BASE["customers"]]
PASS_HOUR = time(9, 0)


# Portfolios in the import format ---------------------------------------------------------


def subscription_record(number: int, customer: str, state: SubscriptionState) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": f"s{number}", "customer_id": customer, "product": "TBox", "licences": number,
        "start_date": state.start_date.isoformat(),
        "anniversary_date": state.anniversary_date.isoformat(),
        "term_months": state.term_months, "auto_renew": state.auto_renew,
    }
    if state.renewal is not None:
        record["renewal"] = {"ordered_on": state.renewal.ordered_on.isoformat(),
                             "years": state.renewal.years}
    if state.pending_change is not None:
        record["pending_change"] = {"term_months": state.pending_change.term_months}
    return record


@st.composite
def portfolios(draw: st.DrawFn) -> dict[str, Any]:
    """The base resellers and customers with generated subscriptions and invoices."""
    states = draw(st.lists(subscriptions(), min_size=1, max_size=3))
    records = [subscription_record(number, draw(st.sampled_from(CUSTOMERS)), state)
               for number, state in enumerate(states, start=1)]
    invoices = [{"id": invoice.id, "customer_id": draw(st.sampled_from(CUSTOMERS)),
                 "requested_on": invoice.requested_on.isoformat(),
                 "paid_on": invoice.paid_on.isoformat() if invoice.paid_on else None}
                for invoice in draw(invoice_books())]
    return {"resellers": BASE["resellers"], "customers": BASE["customers"],
            "subscriptions": records, "purchase_authorizations": invoices}


def first_day(data: dict[str, Any]) -> date:
    starts = [date.fromisoformat(s["start_date"]) for s in data["subscriptions"]]
    return min([*starts, REQUESTS_FROM]) - timedelta(days=3)


@st.composite
def pass_days(draw: st.DrawFn, data: dict[str, Any]) -> list[date]:
    """A few passes at irregular intervals, over about two years at most."""
    day = first_day(data) + timedelta(days=draw(st.integers(0, 60)))
    days = [day]
    for gap in draw(st.lists(st.integers(1, 150), min_size=2, max_size=6)):
        days.append(days[-1] + timedelta(days=gap))
    return days


def moment(day: date) -> datetime:
    return datetime.combine(day, PASS_HOUR, tzinfo=UTC)


def as_file(data: dict[str, Any]) -> str:
    return json.dumps(data)


# Databases ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with the schema, copied for each example."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    return path


@contextmanager
def databases(template: Path, count: int) -> Iterator[list[Engine]]:
    with tempfile.TemporaryDirectory(prefix="reimport-") as folder:
        engines = []
        for number in range(count):
            path = Path(folder) / f"db{number}.db"
            shutil.copyfile(template, path)
            engines.append(make_engine(f"sqlite:///{path}"))
        try:
            yield engines
        finally:
            for engine in engines:
                engine.dispose()


def exported(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return export_state(connection)


def tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table but the imports' own log: the whole state, field by field."""
    dump: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name != "imports":
                query = select(table).order_by(*table.primary_key.columns)
                dump[table.name] = [dict(row) for row in connection.execute(query).mappings()]
    return dump


def run(engine: Engine, day: date) -> None:
    run_pass(engine, POLICY, moment(day))


# Properties ------------------------------------------------------------------------------


@HISTORIES
@given(data=st.data(), portfolio=portfolios())
def test_the_same_file_imported_again_at_any_point_changes_nothing_then_or_later(
        template: Path, data: st.DataObject, portfolio: dict[str, Any]) -> None:
    """One database gets the file again (once or twice) between passes; the other does not.
    Their exports agree after every pass, and every re-import reports no change."""
    file = as_file(portfolio)
    days = data.draw(pass_days(portfolio))
    again = set(data.draw(st.lists(st.integers(0, len(days)), min_size=1, max_size=2)))
    with databases(template, 2) as (once, twice):
        for engine in (once, twice):
            import_data(engine, file, POLICY, started_at=datetime.now(UTC))
        for step, day in enumerate([*days, None]):
            if step in again:
                before = tables(twice)
                report = import_data(twice, file, POLICY, started_at=datetime.now(UTC))
                assert (False, before) == (report.changed, tables(twice))
            if day is not None:
                run(once, day)
                run(twice, day)
                assert exported(once) == exported(twice)


@st.composite
def next_file(draw: st.DrawFn, portfolio: dict[str, Any]) -> dict[str, Any]:
    """The portal's next state: each subscription may get a new term sold, a pending change
    (or none), a renewal, a later AD, auto-renew switched, more licences."""
    records = []
    for held in portfolio["subscriptions"]:
        record = dict(held)
        if draw(st.booleans()):
            record["term_months"] = draw(st.integers(1, 36))
        if draw(st.booleans()):
            months = draw(st.none() | st.integers(1, 36))
            record["pending_change"] = None if months is None else {"term_months": months}
        if draw(st.booleans()):
            ordered = date.fromisoformat(record["start_date"]) + timedelta(
                days=draw(st.integers(0, 3 * 366)))
            record["renewal"] = {"ordered_on": ordered.isoformat(),
                                 "years": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            later = date.fromisoformat(record["anniversary_date"]) + timedelta(
                days=draw(st.integers(1, 400)))
            record["anniversary_date"] = later.isoformat()
        record["auto_renew"] = draw(st.booleans())
        record["licences"] += draw(st.integers(0, 2))
        records.append(record)
    return {**portfolio, "subscriptions": records}


@HISTORIES
@given(data=st.data(), portfolio=portfolios())
def test_after_any_history_of_files_and_passes_the_last_file_again_changes_nothing(
        template: Path, data: st.DataObject, portfolio: dict[str, Any]) -> None:
    """The portal changes its mind between passes (terms, pending changes, renewals, ADs);
    whenever it re-sends the file it sent last, nothing changes then or later."""
    days = data.draw(pass_days(portfolio))
    files = [portfolio]
    for _ in days[1:]:
        files.append(data.draw(next_file(files[-1])))
    again = data.draw(st.lists(st.booleans(), min_size=len(days), max_size=len(days)))
    with databases(template, 2) as (once, twice):
        for day, file, resend in zip(days, files, again, strict=True):
            for engine in (once, twice):
                import_data(engine, as_file(file), POLICY, started_at=datetime.now(UTC))
                run(engine, day)
            if resend:
                before = tables(twice)
                report = import_data(twice, as_file(file), POLICY, started_at=datetime.now(UTC))
                assert (False, before) == (report.changed, tables(twice))
        later = days[-1] + timedelta(days=data.draw(st.integers(1, 400)))
        for engine in (once, twice):
            run(engine, later)
        assert exported(once) == exported(twice)


def chunked(portfolio: dict[str, Any], pieces: int) -> list[str]:
    """The records in section order, cut into consecutive files."""
    records = [(section, record) for section, items in portfolio.items() for record in items]
    size = -(-len(records) // pieces)
    files = []
    for start in range(0, len(records), size):
        part: dict[str, list[Any]] = {}
        for section, record in records[start:start + size]:
            part.setdefault(section, []).append(record)
        files.append(as_file(part))
    return files


def shuffled(portfolio: dict[str, Any], seed: int) -> str:
    rng = random.Random(seed)
    sections = list(portfolio.items())
    rng.shuffle(sections)
    return as_file({name: rng.sample(items, len(items)) for name, items in sections})


@HISTORIES
@given(data=st.data(), portfolio=portfolios(), pieces=st.integers(2, 5),
       seed=st.integers(0, 2**16))
def test_a_file_whole_in_chunks_or_shuffled_leaves_the_same_state(
        template: Path, data: st.DataObject, portfolio: dict[str, Any], pieces: int,
        seed: int) -> None:
    """The order of records and sections, and how a portal splits its state, do not matter."""
    days = data.draw(pass_days(portfolio))
    with databases(template, 3) as (whole, chunks, mixed):
        import_data(whole, as_file(portfolio), POLICY, started_at=datetime.now(UTC))
        for part in chunked(portfolio, pieces):
            import_data(chunks, part, POLICY, started_at=datetime.now(UTC))
        import_data(mixed, shuffled(portfolio, seed), POLICY, started_at=datetime.now(UTC))
        for day in days:
            for engine in (whole, chunks, mixed):
                run(engine, day)
            assert exported(whole) == exported(chunks) == exported(mixed)


def as_pass_lists(row: dict[str, Any], dated: str) -> dict[str, Any]:
    """A forecast row as the pass summary lists it (`date` is there the occasion or the
    effective date; the forecast adds the simulated day)."""
    return {**{key: value for key, value in row.items() if key not in ("date", dated)},
            "date": row[dated]}


def day_lists(notices: list[dict[str, Any]], changes: list[dict[str, Any]]) -> Any:
    return (sorted(json.dumps(notice, sort_keys=True) for notice in notices),
            sorted(json.dumps(change, sort_keys=True) for change in changes))


@FORECASTS
@given(data=st.data(), portfolio=portfolios(), days=st.integers(1, 6))
def test_forecast_lists_what_daily_passes_at_the_forecast_hour_then_do(
        template: Path, data: st.DataObject, portfolio: dict[str, Any], days: int) -> None:
    """Day by day, the same notices (kind, ref, audience, recipients) and status changes."""
    start = data.draw(pass_days(portfolio))[-1]
    zone = ZoneInfo(POLICY.schedule.timezone)
    with databases(template, 1) as (engine,):
        import_data(engine, as_file(portfolio), POLICY, started_at=datetime.now(UTC))
        run(engine, start - timedelta(days=1))
        predicted = forecast(engine, POLICY, start, days)
        for offset, planned in enumerate(predicted):
            day = start + timedelta(days=offset)
            done = run_pass(engine, POLICY, datetime.combine(
                day, POLICY.schedule.forecast_pass_at, tzinfo=zone))
            assert day_lists(done.notices, done.transitions) == day_lists(
                [as_pass_lists(notice, "occasion_date") for notice in planned["notices"]],
                [as_pass_lists(change, "effective_on") for change in planned["changes"]])


@HISTORIES
@given(data=st.data(), portfolio=portfolios())
def test_a_dry_run_pass_lists_exactly_what_the_real_pass_then_does(
        template: Path, data: st.DataObject, portfolio: dict[str, Any]) -> None:
    """At any point of a history, `run --once --dry-run`'s lists are the real run's."""
    days = data.draw(pass_days(portfolio))
    with databases(template, 1) as (engine,):
        import_data(engine, as_file(portfolio), POLICY, started_at=datetime.now(UTC))
        for day in days:
            before = tables(engine)
            dry = run_pass(engine, POLICY, moment(day), dry_run=True)
            assert before == tables(engine)
            real = run_pass(engine, POLICY, moment(day))
            assert (dry.transitions, dry.notices, dry.counts()) == (
                real.transitions, real.notices, real.counts())


def test_the_same_file_again_changes_nothing_on_either_backend(engine: Engine) -> None:
    """One history with both moves the worker makes on its own (a pending change applied,
    an extended first term ended), re-imported after every pass, on PostgreSQL too."""
    portfolio = {**BASE, "subscriptions": [
        {**BASE["subscriptions"][0], "auto_renew": True, "pending_change": {"term_months": 1}},
        {**BASE["subscriptions"][1], "start_date": "2026-01-10",
         "anniversary_date": "2027-03-10", "term_months": 14},
    ]}
    file = as_file(portfolio)
    import_data(engine, file, POLICY, started_at=datetime.now(UTC))
    for day in ("2027-02-01", "2027-03-16", "2027-04-16", "2028-03-11"):
        run(engine, date.fromisoformat(day))
        before = tables(engine)
        assert not import_data(engine, file, POLICY, started_at=datetime.now(UTC)).changed
        assert before == tables(engine)
    subs = {row["id"]: row for row in exported(engine)["subscriptions"]}
    assert ("2028-03-15", 1, "2029-03-10", 12) == (
        subs["s1"]["anniversary_date"], subs["s1"]["current_term_months"],
        subs["s2"]["anniversary_date"], subs["s2"]["current_term_months"])
