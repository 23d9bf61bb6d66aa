"""Re-imports on both backends: the audit trail of imports, a new term sold, a pending
change withdrawn, and the migration that split the term sold from the current term."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, select, text

from tests.import_samples import full_document, run, set_columns, stored
from tests.portfolio import as_json, portfolio
from worker.config.policy import Policy
from worker.db.engine import MIGRATIONS, make_engine
from worker.db.schema import IMPORTS, NOTIFICATIONS, TRANSITIONS
from worker.importing.load import import_data
from worker.passes.run import run_pass

IMPORTED_AT = datetime(2027, 2, 1, 8, 30, tzinfo=UTC)


def import_rows(engine: Engine) -> list[tuple[Any, ...]]:
    columns = TRANSITIONS.c
    query = (select(columns.record_type, columns.record_id, columns.field, columns.from_value,
                    columns.to_value, columns.reason, columns.pass_id, columns.effective_on)
             .where(columns.import_id.is_not(None)).order_by(columns.id))
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_an_import_audits_what_it_changes_that_the_rules_use_naming_itself(
        engine: Engine, policy: Policy) -> None:
    """A later AD, auto-renew, an account state and a payment are in the audit trail with
    the import as their reason; licences are not; the import has its own row."""
    run(engine, policy, full_document())
    document = {
        "customers": [{"id": "c1", "reseller_id": "r1", "name": "Boulangerie Dupont",
                       "timezone": "Europe/Paris", "account_state": "suspended"}],
        "subscriptions": [{"id": "s1", "auto_renew": True, "licences": 99,
                           "anniversary_date": "2027-04-15"}],
        "purchase_authorizations": [{"id": "pa1", "paid_on": "2027-01-30"}],
    }
    raw = as_json(document)
    report = import_data(engine, raw, policy, started_at=IMPORTED_AT)
    on = IMPORTED_AT.date()
    assert [
        ("customer", "c1", "account_state", "active", "suspended", "import", None, on),
        ("subscription", "s1", "auto_renew", "false", "true", "import", None, on),
        ("subscription", "s1", "anniversary_date", "2027-03-15", "2027-04-15", "import", None,
         on),
        ("purchase_authorization", "pa1", "paid_on", None, "2027-01-30", "import", None, on),
    ] == import_rows(engine)
    with engine.connect() as connection:
        imports = connection.execute(select(IMPORTS)).mappings().all()
    assert (report.import_id, IMPORTED_AT, hashlib.sha256(raw.encode()).hexdigest()) == (
        imports[-1]["id"], imports[-1]["started_at"], imports[-1]["digest"])
    assert {"created": 0, "updated": 1, "unchanged": 0} == imports[-1]["counts"]["subscriptions"]


def test_a_dry_run_writes_no_import_and_no_audit(engine: Engine, policy: Policy) -> None:
    """Nothing at all is written: not the import's row, not its audit rows."""
    run(engine, policy, full_document())
    report = import_data(engine, as_json({"subscriptions": [{"id": "s1", "auto_renew": True}]}),
                         policy, dry_run=True, started_at=datetime.now(UTC))
    assert (True, None, []) == (report.changed, report.import_id, import_rows(engine))
    assert ["subscriptions[s1].auto_renew: false → true"] == report.lines()


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T09:00:00+00:00")


def monthly_from_the_portal(engine: Engine, policy: Policy) -> dict[str, Any]:
    """s1 sold for 12 months with auto-renew, running; then the portal sells it monthly."""
    subscriptions = [{**portfolio()["subscriptions"][0], "auto_renew": True}]
    import_data(engine, as_json(portfolio(subscriptions=subscriptions)), policy,
                started_at=datetime.now(UTC))
    run_pass(engine, policy, at("2026-04-01"))
    subscriptions[0]["term_months"] = 1
    return portfolio(subscriptions=subscriptions)


def test_a_new_term_sold_takes_effect_at_the_end_of_the_current_period(
        engine: Engine, policy: Policy) -> None:
    """docs/rules.md, pending change: the new term is used from the AD held on; the current
    term runs to its end; the same file again changes nothing."""
    document = monthly_from_the_portal(engine, policy)
    report = import_data(engine, as_json(document), policy, started_at=datetime.now(UTC))
    assert [
        "subscriptions[s1].pending_change.term_months: none → 1",
        "subscriptions[s1].pending_change.due_on: none → 2027-03-15",
        "subscriptions[s1].term_months: 12 → 1",
        "subscriptions[s1].term_months: a new term sold: takes effect at the end of the "
        "current period (2027-03-15)",
    ] == report.lines()
    row = stored(engine, "subscriptions", "s1")
    assert (1, 12) == (row["term_months"], row["current_term_months"])
    run_pass(engine, policy, at("2027-03-16"))
    assert not import_data(engine, as_json(document), policy, started_at=datetime.now(UTC)).changed
    run_pass(engine, policy, at("2027-04-16"))
    row = stored(engine, "subscriptions", "s1")
    assert (date(2027, 5, 15), 1, None) == (
        row["anniversary_date"], row["current_term_months"], row["pending_term_months"])
    with engine.connect() as connection:
        kinds = set(connection.scalars(select(NOTIFICATIONS.c.kind).where(
            NOTIFICATIONS.c.ref == "s1", NOTIFICATIONS.c.occasion_date >= date(2027, 3, 15))))
    assert {"auto_renewed", "term_change_applied"} == kinds


def test_a_pending_change_withdrawn_by_null_is_cleared_and_null_again_keeps_a_new_term(
        engine: Engine, policy: Policy) -> None:
    """`null` withdraws the change waiting; once said, saying it again changes nothing, and
    a term decision made since stays waiting."""
    run(engine, policy, full_document())
    set_columns(engine, "subscriptions", "s1", status="active")
    run(engine, policy, {"subscriptions": [{"id": "s1", "pending_change": None}]})
    assert stored(engine, "subscriptions", "s1")["pending_term_months"] is None
    run(engine, policy, {"subscriptions": [{"id": "s1", "term_months": 24,
                                            "pending_change": None}]})
    again = import_data(engine, as_json({"subscriptions": [
        {"id": "s1", "term_months": 24, "pending_change": None}]}), policy,
        started_at=datetime.now(UTC))
    row = stored(engine, "subscriptions", "s1")
    assert (False, 24, date(2027, 3, 15)) == (again.changed, row["pending_term_months"],
                                              row["pending_due_ad"])


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


_ROW = ("INSERT INTO subscriptions (id, customer_id, reseller_id, product, licences, start_date,"
        " anniversary_date, anchor_day, term_months, first_term_extended, auto_renew,"
        " pending_term_months, status, bucket, next_check_at) VALUES (:id, 'c1', 'r1', 'TBox',"
        " 1, '2026-01-10', '2027-03-10', 10, :term, :extended, false, :pending, :status, 'ok',"
        " '1970-01-01 00:00:00')")


def test_the_migration_keeps_the_current_term_and_forgets_a_term_sold_it_cannot_know(
        empty_database_url: str) -> None:
    """Rows a pass may have moved get no term sold (the next import records the portal's
    without taking it for a decision); the others keep theirs; downgrade gives one back."""
    engine = make_engine(empty_database_url)
    command.upgrade(_config(engine), "0004")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO resellers (id, name, email, sender_name, locale, timezone,"
            " account_managers, next_digest_at) VALUES ('r1', 'R', 'r@x.example', 'R', 'fr',"
            " 'UTC', '[]', '1970-01-01 00:00:00')"))
        connection.execute(text(
            "INSERT INTO customers (id, reseller_id, name, segment, locale, timezone, admins,"
            " account_state, payment_standing, next_check_at) VALUES ('c1', 'r1', 'C',"
            " 'commercial', 'fr', 'UTC', '[]', 'active', 'current', '1970-01-01 00:00:00')"))
        for values in ({"id": "moved", "term": 1, "extended": False, "pending": None,
                        "status": "active"},
                       {"id": "waiting", "term": 12, "extended": False, "pending": 1,
                        "status": "pending_start"},
                       {"id": "extended", "term": 14, "extended": True, "pending": None,
                        "status": "active"}):
            connection.execute(text(_ROW), values)
    command.upgrade(_config(engine), "head")
    query = text("SELECT id, term_months, current_term_months, imported_pending_term_months"
                 " FROM subscriptions ORDER BY id")
    with engine.connect() as connection:
        assert [("extended", 14, 14, None), ("moved", None, 1, None),
                ("waiting", 12, 12, 1)] == [tuple(row) for row in connection.execute(query)]
    command.downgrade(_config(engine), "0004")
    with engine.connect() as connection:
        assert [("extended", 14), ("moved", 1), ("waiting", 12)] == [tuple(row) for row in (
            connection.execute(text("SELECT id, term_months FROM subscriptions ORDER BY id")))]
    engine.dispose()


def test_the_current_term_in_a_file_is_the_workers_and_is_ignored_with_a_warning(
        engine: Engine, policy: Policy) -> None:
    """A portal that sends back what it exported does not set the worker's own term."""
    run(engine, policy, full_document())
    report = import_data(engine, as_json({"subscriptions": [
        {"id": "s1", "current_term_months": 3}]}), policy, started_at=datetime.now(UTC))
    assert ("subscriptions[0].current_term_months: set by the worker, ignored",) == \
        report.warnings
    assert 12 == stored(engine, "subscriptions", "s1")["current_term_months"]


def test_every_field_of_the_file_has_exactly_one_owner_and_only_real_columns() -> None:
    """The ownership table is the whole story: a field added to the file's shape without
    saying who owns it, or naming a column the table lacks, is caught here."""
    from worker.db.schema import metadata
    from worker.importing.ownership import OWNERSHIP
    from worker.importing.shapes import SHAPES

    for section, shape in SHAPES.items():
        owned = [entry.field for entry in OWNERSHIP[section] if entry.when != "always"]
        assert sorted(set(shape.fields) - {"id"}) == sorted(owned), section
        columns = set(metadata.tables[section].columns.keys())
        for entry in OWNERSHIP[section]:
            assert set(entry.columns) | set(entry.audit) <= columns, entry.field
            assert set(entry.audit) <= set(entry.columns), entry.field


def test_a_term_sold_unknown_since_the_migration_is_recorded_and_the_current_term_stays(
        engine: Engine, policy: Policy) -> None:
    """A row a pass may have moved before the split has no term sold: the portal's next
    word is recorded, never taken for a decision that would undo the worker's term."""
    run(engine, policy, full_document())
    set_columns(engine, "subscriptions", "s1", status="active", term_months=None,
                current_term_months=1, pending_term_months=None, pending_due_ad=None)
    report = import_data(engine, as_json({"subscriptions": [{"id": "s1", "term_months": 12}]}),
                         policy, started_at=datetime.now(UTC))
    assert [
        "subscriptions[s1].term_months: none → 12",
        "subscriptions[s1].term_months: recorded as the term sold; the current term (1 month) "
        "stays: the term imported before is not known",
    ] == report.lines()
    row = stored(engine, "subscriptions", "s1")
    assert (12, 1, None) == (row["term_months"], row["current_term_months"],
                             row["pending_term_months"])
