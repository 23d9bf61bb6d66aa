"""The import command's engine on both backends: what it refuses, and how it upserts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine

from tests.import_samples import (
    code,
    customer,
    full_document,
    purchase_authorization,
    refused,
    reseller,
    run,
    set_columns,
    snapshot,
    stored,
    subscription,
)
from worker.config.policy import Policy
from worker.db.schema import EPOCH
from worker.errors import ImportRejected
from worker.importing import fields
from worker.importing import run as run_module
from worker.importing.codes import check_code_limit
from worker.importing.load import ImportReport, SectionCounts, import_file
from worker.importing.merge import World
from worker.importing.problems import Problems

LATER = datetime(2030, 1, 1, tzinfo=UTC)
ONE_NEW = SectionCounts(created=1)
ONE_UPDATED = SectionCounts(updated=1)
ONE_UNCHANGED = SectionCounts(unchanged=1)


def every_section(counts: SectionCounts) -> ImportReport:
    return ImportReport(resellers=counts, customers=counts, subscriptions=counts,
                        purchase_authorizations=counts, reseller_change_codes=counts)


def with_customer(**fields: Any) -> dict[str, Any]:
    return {"resellers": [reseller()], "customers": [customer(**fields)]}


def with_subscription(**fields: Any) -> dict[str, Any]:
    return with_customer() | {"subscriptions": [subscription(**fields)]}


@pytest.fixture
def loaded(engine: Engine, policy: Policy) -> Engine:
    """A database holding the README's example."""
    run(engine, policy, full_document())
    return engine


# Refusals: each names its path, and nothing is written.


def test_malformed_json_gives_one_error_with_line_and_column(engine: Engine,
                                                             policy: Policy) -> None:
    """An operator must find the broken spot of a hand-edited file."""
    errors = refused(engine, policy, '{"resellers": [\n  {"id": "r1",,}\n]}')
    assert errors == ["file: not valid JSON at line 2, column 15: "
                      "Expecting property name enclosed in double quotes"]


def test_the_top_level_must_be_an_object(engine: Engine, policy: Policy) -> None:
    """A bare list has no sections to read."""
    assert refused(engine, policy, "[]") == ["file: the top level must be a JSON object, not array"]


def test_each_section_must_be_a_list_of_objects(engine: Engine, policy: Policy) -> None:
    """A section given as an object, or a record as a string, is a malformed file."""
    errors = refused(engine, policy, {"resellers": {"id": "r1"}, "customers": ["c1"]})
    assert errors == ["resellers: must be a list of objects, not object",
                      "customers[0]: must be an object, not string"]


def test_every_record_needs_a_string_id(engine: Engine, policy: Policy) -> None:
    """Upserts go by id: a record without one cannot be placed."""
    errors = refused(engine, policy, {"resellers": [reseller(drop=("id",)), reseller(id=7)]})
    assert errors == ["resellers[0].id: required", "resellers[1].id: must be a string, not number"]


def test_a_string_is_not_an_integer(engine: Engine, policy: Policy) -> None:
    """Types are strict: "12" may be a typo for anything."""
    errors = refused(engine, policy, with_subscription(term_months="12"))
    assert errors == ["subscriptions[0].term_months: must be an integer, not string"]


def test_a_number_is_not_a_boolean(engine: Engine, policy: Policy) -> None:
    """`1` for auto_renew is refused rather than guessed."""
    errors = refused(engine, policy, with_subscription(auto_renew=1))
    assert errors == ["subscriptions[0].auto_renew: must be true or false, not number"]


def test_a_date_must_be_a_yyyy_mm_dd_string(engine: Engine, policy: Policy) -> None:
    """Dates in other spellings are ambiguous (15/03 or 03/15)."""
    errors = refused(engine, policy, with_subscription(start_date="15/03/2026"))
    assert errors == ['subscriptions[0].start_date: must be a date written "YYYY-MM-DD" '
                      "(got '15/03/2026')"]


def test_a_naive_timestamp_is_refused(engine: Engine, policy: Policy) -> None:
    """Without an offset a code's issue instant, hence its expiry, is unknown."""
    document = with_customer() | {"reseller_change_codes": [code(issued_at="2027-01-10T09:30:00")]}
    errors = refused(engine, policy, document)
    assert errors == ["reseller_change_codes[0].issued_at: needs a UTC offset or Z "
                      "(got '2027-01-10T09:30:00')"]


def test_a_new_record_missing_a_required_field_is_refused(engine: Engine,
                                                          policy: Policy) -> None:
    """A customer without a timezone has no local dates to judge by."""
    errors = refused(engine, policy, with_customer(drop=("timezone",)))
    assert errors == ["customers[0].timezone: required"]


def test_null_on_a_required_field_is_refused_even_on_reimport(loaded: Engine,
                                                              policy: Policy) -> None:
    """`null` clears a field, and a required field cannot be cleared."""
    errors = refused(loaded, policy, {"customers": [{"id": "c1", "name": None}]})
    assert errors == ["customers[0].name: required, must not be null"]


def test_an_invalid_email_address_is_refused(engine: Engine, policy: Policy) -> None:
    """Mail to a malformed address bounces; nested paths name the admin."""
    document = {"resellers": [reseller(email="ops.nuage.example")],
                "customers": [customer(admins=[{"name": "Paul", "email": "paul@"}])]}
    assert refused(engine, policy, document) == [
        "resellers[0].email: not a valid email address 'ops.nuage.example': "
        "An email address must have an @-sign.",
        "customers[0].admins[0].email: not a valid email address 'paul@': "
        "There must be something after the @-sign.",
    ]


def test_an_unknown_timezone_is_refused(engine: Engine, policy: Policy) -> None:
    """Local dates need a real IANA zone."""
    errors = refused(engine, policy, with_customer(timezone="Europe/Pariss"))
    assert errors == ["customers[0].timezone: unknown timezone 'Europe/Pariss'"]


def test_an_unknown_locale_is_refused(engine: Engine, policy: Policy) -> None:
    """Emails are rendered in the locale: it must be one the locale library knows."""
    errors = refused(engine, policy, {"resellers": [reseller(locale="xx")]})
    assert errors == ["resellers[0].locale: unknown locale 'xx'"]


def test_an_unknown_country_code_is_refused(engine: Engine, policy: Policy) -> None:
    """Countries are two-letter ISO codes."""
    errors = refused(engine, policy, with_customer(country="XY"))
    assert errors == ["customers[0].country: unknown country code 'XY' "
                      "(expected two letters, as 'FR')"]


def test_words_outside_the_domain_are_refused(engine: Engine, policy: Policy) -> None:
    """Segment, account state and invitation status take docs/rules.md's words only."""
    document = with_customer(segment="retail", account_state="closed",
                             invitation={"status": "sent", "sent_at": "2027-01-04T10:00:00Z"})
    assert refused(engine, policy, document) == [
        "customers[0].segment: must be one of commercial, education, government "
        "(got 'retail')",
        "customers[0].account_state: must be one of active, suspended, updating "
        "(got 'closed')",
        "customers[0].invitation.status: must be one of pending, accepted (got 'sent')",
    ]


def test_an_unknown_reseller_is_refused(engine: Engine, policy: Policy) -> None:
    """A customer's reseller must be in the file or already stored."""
    document = {"resellers": [reseller()],
                "customers": [customer(id="c0"), customer(reseller_id="r9", managed_by=None)]}
    assert refused(engine, policy, document) == ["customers[1].reseller_id: unknown reseller 'r9'"]


def test_managed_by_must_be_an_account_manager_of_the_customers_own_reseller(
        loaded: Engine, policy: Policy) -> None:
    """An account manager of another reseller would receive this customer's notices."""
    document = {"resellers": [reseller(id="r2", account_managers=[
                    {"id": "am2", "name": "Sam Roy", "email": "sam@maple.example"}])],
                "customers": [{"id": "c1", "managed_by": "am2"}]}
    assert refused(loaded, policy, document) == [
        "customers[0].managed_by: unknown account manager 'am2' of reseller 'r1'"]


def test_unknown_customers_and_resellers_in_other_sections_are_refused(
        engine: Engine, policy: Policy) -> None:
    """Subscriptions, authorizations and codes must point at known records."""
    document = with_customer() | {
        "subscriptions": [subscription(customer_id="c9")],
        "purchase_authorizations": [purchase_authorization(customer_id="c8")],
        "reseller_change_codes": [code(customer_id="c7", reseller_id="r7")],
    }
    assert refused(engine, policy, document) == [
        "subscriptions[0].customer_id: unknown customer 'c9'",
        "purchase_authorizations[0].customer_id: unknown customer 'c8'",
        "reseller_change_codes[0].customer_id: unknown customer 'c7'",
        "reseller_change_codes[0].reseller_id: unknown reseller 'r7'",
    ]


def test_a_reference_may_point_to_a_stored_record(loaded: Engine, policy: Policy) -> None:
    """Later files carry only what changed: c1 and r1 are already in the database."""
    report = run(loaded, policy, {"subscriptions": [subscription(id="s2")]})
    assert report.subscriptions == ONE_NEW
    assert stored(loaded, "subscriptions", "s2")["reseller_id"] == "r1"


def test_an_id_used_twice_in_a_section_is_refused(engine: Engine, policy: Policy) -> None:
    """Two versions of one record in one file: which one is meant is unknown."""
    document = {"resellers": [reseller(), reseller(id="r2"), reseller(name="Nuage")]}
    assert refused(engine, policy, document) == [
        "resellers[0].id: duplicate id 'r1' (also resellers[2])"]


def test_a_negative_licence_count_is_refused(engine: Engine, policy: Policy) -> None:
    """A licence count is a number of seats."""
    errors = refused(engine, policy, with_subscription(licences=-1))
    assert errors == ["subscriptions[0].licences: must not be negative (got -1)"]


def test_an_impossible_date_is_refused(engine: Engine, policy: Policy) -> None:
    """30 February does not exist, whatever the portal's date picker allowed."""
    errors = refused(engine, policy, with_subscription(anniversary_date="2027-02-30"))
    assert errors == ["subscriptions[0].anniversary_date: impossible date '2027-02-30'"]


def test_an_anniversary_date_not_after_the_start_date_is_refused(engine: Engine,
                                                                  policy: Policy) -> None:
    """A term must end after it starts."""
    errors = refused(engine, policy, with_subscription(anniversary_date="2026-03-15"))
    assert errors == ["subscriptions[0].anniversary_date: must be after start_date 2026-03-15"]


def test_a_term_of_zero_months_is_refused(engine: Engine, policy: Policy) -> None:
    """An empty term would renew forever on the same day."""
    errors = refused(engine, policy, with_subscription(term_months=0))
    assert errors == ["subscriptions[0].term_months: must be at least 1 (got 0)"]


@pytest.mark.parametrize(("segment", "months"),
                         [("commercial", 37), ("education", 49), ("government", 49)])
def test_a_term_above_the_segments_maximum_is_refused(engine: Engine, policy: Policy,
                                                      segment: str, months: int) -> None:
    """Extended first terms stop at 36 months (commercial) or 48 (education, government)."""
    document = with_customer(segment=segment) | {
        "subscriptions": [subscription(term_months=months, pending_change=None)]}
    maximum = months - 1
    assert refused(engine, policy, document) == [
        f"subscriptions[0].term_months: {months} months is above the maximum of {maximum} "
        f"for a {segment} customer"]


def test_the_term_maximum_uses_the_segment_the_file_gives_the_customer(
        loaded: Engine, policy: Policy) -> None:
    """Checks run on merged records: c1 becomes an education customer in the same file."""
    document = {"customers": [{"id": "c1", "segment": "education"}],
                "subscriptions": [{"id": "s1", "term_months": 48}]}
    report = run(loaded, policy, document)
    assert report.subscriptions == ONE_UPDATED


def test_renewal_years_must_be_a_positive_integer(engine: Engine, policy: Policy) -> None:
    """A renewal orders at least one year."""
    errors = refused(engine, policy,
                     with_subscription(renewal={"ordered_on": "2027-02-20", "years": 0}))
    assert errors == ["subscriptions[0].renewal.years: must be at least 1 (got 0)"]


def test_a_pending_change_has_the_term_bounds(engine: Engine, policy: Policy) -> None:
    """The term a change moves to obeys the same limits as any term."""
    document = with_subscription(pending_change={"term_months": 40})
    assert refused(engine, policy, document) == [
        "subscriptions[0].pending_change.term_months: 40 months is above the maximum of 36 "
        "for a commercial customer"]


def test_a_sixth_code_in_the_resellers_local_day_is_refused(loaded: Engine,
                                                            policy: Policy) -> None:
    """Five codes a day in Europe/Paris: 23:30Z on the 10th is already the 11th there."""
    stored_codes = [code(id=f"k{hour}", issued_at=f"2027-01-11T{hour:02d}:00:00Z")
                    for hour in (8, 9, 10)]
    run(loaded, policy, {"reseller_change_codes": stored_codes})
    new_codes = [code(id="n1", issued_at="2027-01-11T12:00:00Z"),
                 code(id="n2", issued_at="2027-01-11T22:30:00Z"),
                 code(id="n3", issued_at="2027-01-10T23:30:00Z")]
    errors = refused(loaded, policy, {"reseller_change_codes": new_codes})
    assert errors == ["reseller_change_codes[1]: reseller 'r1' already issued 5 codes on "
                      "2027-01-11 (its local date; limit 5 a day)"]


def test_five_codes_a_local_day_are_accepted(loaded: Engine, policy: Policy) -> None:
    """k1 (09:30Z on the 10th) plus four more that day, and one that is the 11th in Paris."""
    codes = [code(id=f"n{hour}", issued_at=f"2027-01-10T{hour:02d}:00:00Z")
             for hour in (10, 11, 12, 13)]
    codes.append(code(id="late", issued_at="2027-01-10T23:30:00Z"))
    report = run(loaded, policy, {"reseller_change_codes": codes})
    assert report.reseller_change_codes == SectionCounts(created=5)


def test_reimported_codes_are_not_counted_twice(loaded: Engine, policy: Policy) -> None:
    """A stored code re-imported under its id counts once, as the file gives it."""
    codes = [code(id=f"n{hour}", issued_at=f"2027-01-10T{hour:02d}:00:00Z")
             for hour in (10, 11, 12, 13)]
    run(loaded, policy, {"reseller_change_codes": codes})
    used = [code(used_at="2027-01-10T15:00:00Z"), *codes]
    report = run(loaded, policy, {"reseller_change_codes": used})
    assert report.reseller_change_codes == SectionCounts(updated=1, unchanged=4)


@pytest.mark.parametrize("raw_name", ["Nuage\nConseil", "Nuage\rConseil"])
def test_a_line_break_in_any_name_is_refused(engine: Engine, policy: Policy,
                                             raw_name: str) -> None:
    """Names go into email headers, where a line break would inject a header."""
    person = {"name": raw_name, "email": "x@nuage.example"}
    document = {
        "resellers": [reseller(name=raw_name, sender_name=raw_name,
                               account_managers=[{"id": "am1", **person}])],
        "customers": [customer(name=raw_name, admins=[person])],
        "subscriptions": [subscription(product=raw_name)],
    }
    message = "must not contain a line break (CR or LF)"
    assert refused(engine, policy, document) == [
        f"resellers[0].name: {message}",
        f"resellers[0].sender_name: {message}",
        f"resellers[0].account_managers[0].name: {message}",
        f"customers[0].name: {message}",
        f"customers[0].admins[0].name: {message}",
        f"subscriptions[0].product: {message}",
    ]


def test_a_payment_or_use_before_its_start_is_refused(engine: Engine, policy: Policy) -> None:
    """Paid before requested, or used before issued, is a data-entry mistake."""
    document = with_customer() | {
        "purchase_authorizations": [purchase_authorization(paid_on="2027-01-01")],
        "reseller_change_codes": [code(used_at="2027-01-10T09:00:00Z")],
    }
    assert refused(engine, policy, document) == [
        "purchase_authorizations[0].paid_on: must not be before requested_on 2027-01-02",
        "reseller_change_codes[0].used_at: must not be before issued_at 2027-01-10T09:30:00+00:00",
    ]


def test_a_pending_invitation_needs_its_sent_at(engine: Engine, policy: Policy) -> None:
    """Reminders are counted from the invitation's time."""
    errors = refused(engine, policy, with_customer(invitation={"status": "pending"}))
    assert errors == ["customers[0].invitation.sent_at: required while the invitation is pending"]


def test_dropping_an_account_manager_who_still_manages_a_customer_is_refused(
        loaded: Engine, policy: Policy) -> None:
    """c1 would be left managed by nobody the reseller knows."""
    errors = refused(loaded, policy, {"resellers": [{"id": "r1", "account_managers": []}]})
    assert errors == ["resellers[0].account_managers: removes account manager 'am1', "
                      "who still manages customer 'c1'"]


def test_every_error_is_listed_at_once(engine: Engine, policy: Policy) -> None:
    """One round trip shows everything to fix, in file order."""
    document = {"resellers": [reseller(email="nope@")],
                "customers": [customer(timezone="Mars/Olympus"),
                              customer(id="c2", reseller_id="r9", managed_by=None)]}
    errors = refused(engine, policy, document)
    assert errors == [
        "resellers[0].email: not a valid email address 'nope@': "
        "There must be something after the @-sign.",
        "customers[0].timezone: unknown timezone 'Mars/Olympus'",
        "customers[1].reseller_id: unknown reseller 'r9'",
    ]


# Creating records.


def test_the_contract_example_creates_one_record_of_each_section(engine: Engine,
                                                                 policy: Policy) -> None:
    """Every section maps to its columns, with the worker's initial defaults."""
    report = run(engine, policy, full_document())
    assert report == every_section(ONE_NEW)
    row = stored(engine, "subscriptions", "s1")
    assert (row["reseller_id"], row["anchor_day"], row["first_term_extended"]) == ("r1", 15, False)
    assert (row["renewal_ordered_on"], row["renewal_years"]) == (date(2027, 2, 20), 1)
    assert (row["pending_term_months"], row["pending_due_ad"]) == (1, date(2027, 3, 15))
    assert (row["status"], row["bucket"], row["next_check_at"]) == (
        "pending_start", "not_started", EPOCH)
    person = stored(engine, "customers", "c1")
    assert person["invitation_status"] == "pending"
    assert person["invitation_sent_at"] == datetime(2027, 1, 4, 10, tzinfo=UTC)
    assert person["admins"] == [{"name": "Paul Dupont", "email": "paul@dupont.example"}]
    assert stored(engine, "resellers", "r1")["next_digest_at"] == EPOCH


def test_defaults_fill_what_a_new_record_leaves_out(engine: Engine, policy: Policy) -> None:
    """Only the required fields: the rest comes from the policy and the reseller."""
    document = {
        "resellers": [{"id": "r1", "name": "Nuage", "email": "ops@nuage.example",
                       "locale": "fr-CA"}],
        "customers": [{"id": "c1", "reseller_id": "r1", "name": "Dupont",
                       "timezone": "Europe/Paris"}],
        "subscriptions": [{"id": "s1", "customer_id": "c1", "product": "TBox",
                           "start_date": "2026-03-15", "anniversary_date": "2028-03-15",
                           "term_months": 24}],
    }
    run(engine, policy, document)
    firm = stored(engine, "resellers", "r1")
    assert (firm["sender_name"], firm["locale"], firm["timezone"], firm["account_managers"]) \
        == ("Nuage", "fr_CA", "UTC", [])
    person = stored(engine, "customers", "c1")
    assert (person["segment"], person["locale"], person["account_state"], person["admins"],
            person["invitation_status"]) == ("commercial", "fr_CA", "active", [], None)
    row = stored(engine, "subscriptions", "s1")
    assert (row["licences"], row["auto_renew"], row["first_term_extended"]) == (0, False, True)


@pytest.mark.parametrize("spelling", ["fr-CA", "fr_CA", "fr_ca"])
def test_locales_are_stored_normalised(engine: Engine, policy: Policy, spelling: str) -> None:
    """Templates fall back from `fr_CA`: every spelling must arrive as `fr_CA`."""
    run(engine, policy, {"resellers": [reseller(locale=spelling)]})
    assert stored(engine, "resellers", "r1")["locale"] == "fr_CA"


def test_timestamps_with_an_offset_are_stored_as_the_same_instant(engine: Engine,
                                                                  policy: Policy) -> None:
    """10:30+01:00 is 09:30Z: code expiry is judged to the minute."""
    document = with_customer() | {
        "reseller_change_codes": [code(issued_at="2027-01-10T10:30:00+01:00")]}
    run(engine, policy, document)
    assert stored(engine, "reseller_change_codes", "k1")["issued_at"] == datetime(
        2027, 1, 10, 9, 30, tzinfo=UTC)


def test_unknown_fields_and_sections_are_ignored_with_a_warning_naming_them(
        engine: Engine, policy: Policy) -> None:
    """A portal may carry fields of its own: they are ignored, each named in a warning, and
    a likely misspelling says which field it may be (a typo is never silent)."""
    document = with_customer(colour="blue", admins=[
        {"name": "Paul", "email": "paul@dupont.example", "phone": "1"}]) | {
        "subscriptions": [subscription(licence=3)], "notes": []}
    report = run(engine, policy, document)
    assert sorted(report.warnings) == sorted((
        "notes: unknown section, ignored (known: resellers, customers, subscriptions, "
        "purchase_authorizations, reseller_change_codes)",
        "customers[0].admins[0].phone: unknown field, ignored (known: name, email)",
        "customers[0].colour: unknown field, ignored (known: id, reseller_id, name, timezone, "
        "segment, locale, country, managed_by, admins, account_state, invitation)",
        "subscriptions[0].licence: unknown field, ignored (did you mean 'licences'?)",
    ))
    assert stored(engine, "subscriptions", "s1")["licences"] == subscription()["licences"]


def test_fields_the_worker_sets_are_ignored_with_a_warning(engine: Engine,
                                                           policy: Policy) -> None:
    """Statuses are the worker's own: a portal echoing them is told, not refused."""
    report = run(engine, policy, with_subscription(status="active", bucket="to_renew"))
    assert report.warnings == ("subscriptions[0].status: set by the worker, ignored",
                               "subscriptions[0].bucket: set by the worker, ignored")
    assert stored(engine, "subscriptions", "s1")["status"] == "pending_start"


def test_import_file_reads_the_file_at_a_path(engine: Engine, policy: Policy,
                                              tmp_path: Path) -> None:
    """The CLI passes a path; the file is read as UTF-8 (names are French)."""
    path = tmp_path / "portal.json"
    path.write_text(json.dumps(full_document(), ensure_ascii=False), encoding="utf-8")
    report = import_file(engine, path, policy, started_at=datetime.now(UTC))
    assert report.resellers == ONE_NEW
    assert stored(engine, "resellers", "r1")["account_managers"][0]["name"] == "Léa Martin"


def test_a_missing_file_is_refused_with_its_path(engine: Engine, policy: Policy,
                                                 tmp_path: Path) -> None:
    """A typo in the file name is bad input (exit 2), not a crash."""
    path = tmp_path / "portal.json"
    with pytest.raises(ImportRejected) as refusal:
        import_file(engine, path, policy, started_at=datetime.now(UTC))
    assert refusal.value.errors == [f"file: cannot read {path}: No such file or directory"]


def test_the_report_reads_as_one_line(engine: Engine, policy: Policy) -> None:
    """The CLI prints the report as is; empty sections are left out."""
    document = with_customer(status="active")
    assert str(run(engine, policy, document)) == (
        "resellers 1 created, 0 updated, 0 unchanged; "
        "customers 1 created, 0 updated, 0 unchanged (1 warning(s))")


def test_a_dry_run_writes_nothing_but_reports_what_it_would_do(loaded: Engine,
                                                               policy: Policy) -> None:
    """Operators check a file before loading it."""
    before = snapshot(loaded)
    document = full_document() | {"customers": [customer(name="Dupont & Fils")],
                                  "subscriptions": [subscription(), subscription(id="s2")]}
    report = run(loaded, policy, document, dry_run=True)
    assert report.dry_run
    assert (report.customers, report.subscriptions) == (
        ONE_UPDATED, SectionCounts(created=1, unchanged=1))
    assert snapshot(loaded) == before


# Re-importing records.


def test_the_same_file_again_changes_nothing(loaded: Engine, policy: Policy) -> None:
    """An unchanged record is not written, so its next check is not brought forward."""
    for section in ("customers", "subscriptions", "reseller_change_codes"):
        set_columns(loaded, section, {"customers": "c1", "subscriptions": "s1"}.get(
            section, "k1"), next_check_at=LATER)
    report = run(loaded, policy, full_document())
    assert report == every_section(ONE_UNCHANGED)
    assert stored(loaded, "subscriptions", "s1")["next_check_at"] == LATER


def test_a_reimport_changes_only_the_fields_it_carries(loaded: Engine, policy: Policy) -> None:
    """The portal sends what changed; every other stored value stays."""
    before = stored(loaded, "customers", "c1")
    report = run(loaded, policy, {"customers": [{"id": "c1", "name": "Dupont & Fils"}]})
    assert report.customers == ONE_UPDATED
    after = stored(loaded, "customers", "c1")
    assert after == before | {"name": "Dupont & Fils"}


def test_null_clears_what_it_is_given_for(loaded: Engine, policy: Policy) -> None:
    """`null` clears optional fields and lists, and an unapplied renewal or change."""
    document = {
        "customers": [{"id": "c1", "managed_by": None, "country": None, "invitation": None,
                       "admins": None}],
        "subscriptions": [{"id": "s1", "renewal": None, "pending_change": None}],
    }
    run(loaded, policy, document)
    person = stored(loaded, "customers", "c1")
    assert (person["managed_by"], person["country"], person["invitation_status"],
            person["invitation_sent_at"], person["admins"]) == (None, None, None, None, [])
    row = stored(loaded, "subscriptions", "s1")
    assert (row["renewal_ordered_on"], row["renewal_years"], row["pending_term_months"],
            row["pending_due_ad"]) == (None, None, None, None)


def test_an_unchanged_or_earlier_anniversary_date_changes_nothing(loaded: Engine,
                                                                   policy: Policy) -> None:
    """The worker moved the AD on at the renewal; the portal's older copy must not undo it."""
    set_columns(loaded, "subscriptions", "s1", anniversary_date=date(2028, 3, 15))
    for older in ("2027-03-15", "2028-03-15"):
        report = run(loaded, policy, {"subscriptions": [{"id": "s1", "anniversary_date": older}]})
        assert report.subscriptions == ONE_UNCHANGED
    assert stored(loaded, "subscriptions", "s1")["anniversary_date"] == date(2028, 3, 15)


def test_a_later_anniversary_date_replaces_it_and_its_anchor_day(engine: Engine,
                                                                 policy: Policy) -> None:
    """A customer who chose a new AD: anniversaries follow the new day from then on."""
    run(engine, policy, with_subscription(start_date="2024-02-29", anniversary_date="2025-02-28",
                                          pending_change=None, renewal=None))
    assert stored(engine, "subscriptions", "s1")["anchor_day"] == 29
    run(engine, policy, {"subscriptions": [{"id": "s1", "anniversary_date": "2025-03-31"}]})
    row = stored(engine, "subscriptions", "s1")
    assert (row["anniversary_date"], row["anchor_day"]) == (date(2025, 3, 31), 31)


def test_an_applied_renewal_is_not_applied_again(loaded: Engine, policy: Policy) -> None:
    """Renewals are identified by their order date; a spent one stays spent."""
    set_columns(loaded, "subscriptions", "s1", renewal_spent_through=date(2027, 2, 20),
                renewal_ordered_on=None, renewal_years=None, status="active",
                anniversary_date=date(2028, 3, 15))
    report = run(loaded, policy, {"subscriptions": [subscription()]})
    assert report.subscriptions == ONE_UNCHANGED
    renewal = {"ordered_on": "2028-02-20", "years": 2}
    run(loaded, policy, {"subscriptions": [{"id": "s1", "renewal": renewal}]})
    row = stored(loaded, "subscriptions", "s1")
    assert (row["renewal_ordered_on"], row["renewal_years"]) == (date(2028, 2, 20), 2)


def test_the_same_pending_change_keeps_its_due_date(loaded: Engine, policy: Policy) -> None:
    """The change applies at the AD held when it arrived, not at a later one."""
    set_columns(loaded, "subscriptions", "s1", anniversary_date=date(2028, 3, 15))
    run(loaded, policy, {"subscriptions": [{"id": "s1", "pending_change": {"term_months": 1}}]})
    assert stored(loaded, "subscriptions", "s1")["pending_due_ad"] == date(2027, 3, 15)


def test_another_pending_change_is_due_at_the_stored_anniversary(loaded: Engine,
                                                                  policy: Policy) -> None:
    """A new change waits for the end of the period the subscription is in now."""
    set_columns(loaded, "subscriptions", "s1", anniversary_date=date(2028, 3, 15))
    run(loaded, policy, {"subscriptions": [{"id": "s1", "pending_change": {"term_months": 24}}]})
    row = stored(loaded, "subscriptions", "s1")
    assert (row["pending_term_months"], row["pending_due_ad"]) == (24, date(2028, 3, 15))


def test_an_applied_pending_change_is_not_recorded_again(loaded: Engine,
                                                         policy: Policy) -> None:
    """Once the worker applied it (term set, change cleared), the portal's copy is spent."""
    set_columns(loaded, "subscriptions", "s1", current_term_months=1, pending_term_months=None,
                pending_due_ad=None, status="active")
    run(loaded, policy, {"subscriptions": [{"id": "s1", "pending_change": {"term_months": 1}}]})
    assert stored(loaded, "subscriptions", "s1")["pending_term_months"] is None


def test_the_term_decides_an_extended_first_term_only_before_the_start(
        loaded: Engine, policy: Policy) -> None:
    """Once the subscription runs, its first term is what it was: a new term sold waits
    for the end of the current period, as a pending change does."""
    run(loaded, policy, {"subscriptions": [{"id": "s1", "term_months": 24}]})
    row = stored(loaded, "subscriptions", "s1")
    assert (24, True) == (row["current_term_months"], row["first_term_extended"])
    set_columns(loaded, "subscriptions", "s1", status="active")
    run(loaded, policy, {"subscriptions": [{"id": "s1", "term_months": 12}]})
    row = stored(loaded, "subscriptions", "s1")
    assert (12, 24, True, 12, date(2027, 3, 15)) == (
        row["term_months"], row["current_term_months"], row["first_term_extended"],
        row["pending_term_months"], row["pending_due_ad"])


def test_derived_columns_are_never_written(loaded: Engine, policy: Policy) -> None:
    """Statuses, buckets and payment standing belong to the pass."""
    set_columns(loaded, "subscriptions", "s1", status="grace", bucket="expired",
                status_since=date(2027, 3, 15))
    set_columns(loaded, "customers", "c1", payment_standing="late", payment_episode="pa1")
    set_columns(loaded, "reseller_change_codes", "k1", status="expired")
    document = {"customers": [{"id": "c1", "name": "Dupont & Fils"}],
                "subscriptions": [{"id": "s1", "licences": 20}],
                "reseller_change_codes": [{"id": "k1", "used_at": "2027-01-11T09:00:00Z"}]}
    run(loaded, policy, document)
    row = stored(loaded, "subscriptions", "s1")
    assert (row["status"], row["bucket"], row["status_since"]) == (
        "grace", "expired", date(2027, 3, 15))
    person = stored(loaded, "customers", "c1")
    assert (person["payment_standing"], person["payment_episode"]) == ("late", "pa1")
    assert stored(loaded, "reseller_change_codes", "k1")["status"] == "expired"


def test_a_changed_customer_is_checked_again_with_its_subscriptions_and_codes(
        loaded: Engine, policy: Policy) -> None:
    """A new timezone moves every local date of its records."""
    for section, record_id in (("customers", "c1"), ("subscriptions", "s1"),
                               ("reseller_change_codes", "k1")):
        set_columns(loaded, section, record_id, next_check_at=LATER)
    run(loaded, policy, {"customers": [{"id": "c1", "timezone": "America/Montreal"}]})
    for section, record_id in (("customers", "c1"), ("subscriptions", "s1"),
                               ("reseller_change_codes", "k1")):
        assert stored(loaded, section, record_id)["next_check_at"] == EPOCH


def test_a_changed_purchase_authorization_has_its_customer_checked_again(
        loaded: Engine, policy: Policy) -> None:
    """A payment changes the customer's standing at the next pass."""
    set_columns(loaded, "customers", "c1", next_check_at=LATER)
    run(loaded, policy, {"purchase_authorizations": [{"id": "pa1", "paid_on": "2027-01-20"}]})
    assert stored(loaded, "customers", "c1")["next_check_at"] == EPOCH


def test_a_changed_reseller_keeps_its_digest_time(loaded: Engine, policy: Policy) -> None:
    """The digest is once per local date: an import must not send a second one."""
    set_columns(loaded, "resellers", "r1", next_digest_at=LATER)
    report = run(loaded, policy, {"resellers": [{"id": "r1", "reply_to": "desk@nuage.example"}]})
    assert report.resellers == ONE_UPDATED
    assert stored(loaded, "resellers", "r1")["next_digest_at"] == LATER


def test_a_customer_moved_to_another_reseller_takes_its_subscriptions(
        loaded: Engine, policy: Policy) -> None:
    """Subscriptions carry their customer's reseller for the digest's queries."""
    document = {"resellers": [reseller(id="r2", account_managers=[])],
                "customers": [{"id": "c1", "reseller_id": "r2", "managed_by": None}]}
    run(loaded, policy, document)
    assert stored(loaded, "subscriptions", "s1")["reseller_id"] == "r2"


def test_a_refused_reimport_leaves_the_stored_records(loaded: Engine, policy: Policy) -> None:
    """All or nothing: the valid update in the same file is not written either."""
    document = {"customers": [{"id": "c1", "name": "Dupont & Fils"}],
                "subscriptions": [{"id": "s1", "licences": -5}]}
    errors = refused(loaded, policy, document)
    assert errors == ["subscriptions[0].licences: must not be negative (got -5)"]
    assert stored(loaded, "customers", "c1")["name"] == "Boulangerie Dupont"


def test_a_large_file_imports_and_reimports(engine: Engine, policy: Policy) -> None:
    """Thousands of records go through chunked reads and bulk writes, not row by row."""
    count = 2_000
    document = with_customer() | {"subscriptions": [
        subscription(id=f"s{n}", licences=n) for n in range(count)]}
    assert run(engine, policy, document).subscriptions == SectionCounts(created=count)
    document["subscriptions"][7]["licences"] = 99_999
    report = run(engine, policy, document)
    assert report.subscriptions == SectionCounts(updated=1, unchanged=count - 1)


# The timestamp converter, on its own.


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 12, 30)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_timestamps_round_trip_with_an_offset_and_are_refused_without(
        moment: datetime, offset_minutes: int) -> None:
    """Any instant written with its offset is read back exactly; the same text naive is not."""
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert fields.moment(aware.isoformat()) == aware
    with pytest.raises(fields.Invalid, match="needs a UTC offset"):
        fields.moment(moment.isoformat())


def test_a_pass_changing_a_row_during_the_import_makes_it_start_over(
        loaded: Engine, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The change's due date must come from the AD the pass just moved on, not a stale read."""
    if loaded.dialect.name != "postgresql":
        pytest.skip("SQLite holds the write lock for the whole import: no pass can interleave")
    checked: list[int] = []

    def pass_moves_the_ad_meanwhile(connection: Connection, world: World,
                                    problems: Problems) -> None:
        if not checked:
            set_columns(loaded, "subscriptions", "s1", anniversary_date=date(2028, 3, 15))
        checked.append(1)
        check_code_limit(connection, world, problems)

    monkeypatch.setattr(run_module, "check_code_limit", pass_moves_the_ad_meanwhile)
    run(loaded, policy, {"subscriptions": [{"id": "s1", "pending_change": {"term_months": 24}}]})
    assert len(checked) == 2
    assert stored(loaded, "subscriptions", "s1")["pending_due_ad"] == date(2028, 3, 15)


def test_a_dry_run_of_a_refused_file_is_refused_too(engine: Engine, policy: Policy) -> None:
    """A dry run answers "would this file be accepted?"."""
    with pytest.raises(ImportRejected):
        run(engine, policy, with_customer(timezone="Nowhere"), dry_run=True)
