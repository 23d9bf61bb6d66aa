"""The demo portfolio (scripts/demo_data.py): valid, deterministic, consistent, complete."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from worker.config.policy import Policy
from worker.importing.load import import_data

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "demo_data.py"
AS_OF = date(2027, 3, 1)
SECTIONS = ("resellers", "customers", "subscriptions", "purchase_authorizations",
            "reseller_change_codes")


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_data", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo_data = _load_script()


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, encoding="utf-8", check=True, timeout=60,
    )


@pytest.fixture(scope="module")
def portfolio() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(_generate("--as-of", AS_OF.isoformat()).stdout)
    return raw


def _day(value: str) -> date:
    return date.fromisoformat(value)


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _local_day(stamp: str, zone: str) -> date:
    return _moment(stamp).astimezone(ZoneInfo(zone)).date()


def test_stdout_is_json_with_every_section_and_realistic_ids(portfolio: dict[str, Any]) -> None:
    assert tuple(portfolio) == SECTIONS
    assert len(portfolio["resellers"]) == 2
    assert 10 <= len(portfolio["customers"]) <= 15
    assert 18 <= len(portfolio["subscriptions"]) <= 25
    patterns = {
        "resellers": r"RSL-[A-Z]{2}-\d{4}",
        "customers": r"C-\d{8}",
        "subscriptions": r"SUB-\d{8}-\d{2}",
        "purchase_authorizations": r"PA-\d{7}",
        "reseller_change_codes": r"RCC-[0-9A-Z]{4}-[0-9A-Z]{4}",
    }
    for section, pattern in patterns.items():
        ids = [record["id"] for record in portfolio[section]]
        assert len(set(ids)) == len(ids), section
        for ident in ids:
            assert re.fullmatch(pattern, ident), (section, ident)


def test_same_date_same_bytes_and_out_file(tmp_path: Path) -> None:
    first = _generate("--as-of", "2028-02-29").stdout
    assert _generate("--as-of", "2028-02-29").stdout == first
    assert _generate("--as-of", "2028-03-01").stdout != first
    out = tmp_path / "nested" / "portfolio.json"
    written = _generate("--as-of", "2028-02-29", "--out", str(out))
    assert written.stdout == ""
    assert out.read_text(encoding="utf-8") == first
    assert "Léa Martin" in first  # accents kept as text, not \u escapes


def test_every_reference_points_to_an_existing_record(portfolio: dict[str, Any]) -> None:
    resellers = {r["id"]: r for r in portfolio["resellers"]}
    managers = {r["id"]: {m["id"] for m in r["account_managers"]} for r in resellers.values()}
    customers = {c["id"]: c for c in portfolio["customers"]}
    for customer in customers.values():
        assert customer["reseller_id"] in resellers
        if customer["managed_by"] is not None:
            assert customer["managed_by"] in managers[customer["reseller_id"]]
        ZoneInfo(customer["timezone"])
        assert customer["admins"]
    for section in ("subscriptions", "purchase_authorizations", "reseller_change_codes"):
        for record in portfolio[section]:
            assert record["customer_id"] in customers, (section, record["id"])
    for code in portfolio["reseller_change_codes"]:
        assert code["reseller_id"] in resellers


def test_records_respect_the_import_rules(portfolio: dict[str, Any], policy: Policy) -> None:
    limits = policy.renewal.max_term_months
    segments = {c["id"]: c["segment"] for c in portfolio["customers"]}
    for sub in portfolio["subscriptions"]:
        assert _day(sub["anniversary_date"]) > _day(sub["start_date"]), sub["id"]
        assert 1 <= sub["term_months"] <= limits[segments[sub["customer_id"]]], sub["id"]
        assert sub["licences"] > 0
    for customer in portfolio["customers"]:
        assert customer["account_state"] in ("active", "suspended", "updating")
        assert customer["invitation"]["status"] in ("pending", "accepted")
        for text in (customer["name"], *(a["name"] for a in customer["admins"])):
            assert "\r" not in text
            assert "\n" not in text
    assert {c["segment"] for c in portfolio["customers"]} == set(limits)
    french = [c for c in portfolio["customers"] if c["locale"].startswith("fr")]
    assert any(re.search("[éèêëàâçîïôûùœÉ]", c["name"]) for c in french)
    assert {c["locale"] for c in french} >= {"fr", "fr_CA"}
    assert any(r["locale"] == "fr" and r["timezone"] == "Europe/Paris" and r["account_managers"]
               for r in portfolio["resellers"])
    assert any(r["locale"] == "en" and r["timezone"] == "America/Toronto"
               for r in portfolio["resellers"])


def test_the_pass_moment_is_on_the_as_of_date_for_every_customer() -> None:
    """At the demo's pass moment every customer's local date is D, in and out of DST."""
    zones = {ZoneInfo(c["timezone"]) for c in demo_data.build_portfolio(AS_OF)["customers"]}
    for n in range(731):
        as_of = date(2027, 1, 1) + timedelta(days=n)
        moment = demo_data.pass_moment(as_of)
        for zone in zones:
            assert moment.astimezone(zone).date() == as_of, (as_of, zone)


@pytest.mark.parametrize("as_of", [AS_OF, date(2028, 2, 29), date(2027, 12, 31), date(2028, 1, 30)])
def test_a_pass_on_the_as_of_date_meets_every_rule(as_of: date, policy: Policy) -> None:
    data = demo_data.build_portfolio(as_of)
    subs = data["subscriptions"]
    renewal, grace = policy.renewal, policy.grace
    offsets = {(_day(s["anniversary_date"]) - as_of).days for s in subs}
    assert offsets >= {
        renewal.upcoming_days_before, renewal.window_days_before,
        *renewal.reminder_days_before,
        0,  # AD today
        -5,  # in grace
        -(grace.lapse_after_days - grace.ending_notice_days_before_lapse),  # grace ending
        -grace.lapse_after_days,  # lapsing
    }
    assert any(_day(s["start_date"]) == as_of for s in subs)
    assert any(_day(s["start_date"]) > as_of for s in subs)
    renewals = [s for s in subs if s["renewal"]]
    assert any(_day(s["renewal"]["ordered_on"]) < as_of < _day(s["anniversary_date"])
               for s in renewals)
    assert any(_day(s["renewal"]["ordered_on"]) < _day(s["anniversary_date"]) == as_of
               for s in renewals)
    assert any(_day(s["anniversary_date"]) < _day(s["renewal"]["ordered_on"]) <= as_of
               for s in renewals)
    assert any(s["auto_renew"] and _day(s["anniversary_date"]) == as_of for s in subs)
    assert any(s["term_months"] > 12 and not s["auto_renew"]
               and _day(s["anniversary_date"]) == as_of for s in subs)
    assert any(s["pending_change"] == {"term_months": 1} for s in subs)
    assert any(_day(s["anniversary_date"]).day == 31 for s in subs)
    assert any((_day(s["start_date"]).month, _day(s["start_date"]).day) == (2, 29)
               and _day(s["anniversary_date"]).month == 2 for s in subs)

    unpaid = {(as_of - _day(p["requested_on"])).days
              for p in data["purchase_authorizations"] if p["paid_on"] is None}
    late, suspended = policy.payment.late_after_days, policy.payment.suspended_after_days
    assert any(late <= days < suspended for days in unpaid)
    assert any(days >= suspended for days in unpaid)

    moment = demo_data.pass_moment(as_of)
    valid, warn = policy.codes.valid_hours, policy.codes.expiring_notice_hours_before
    ages = [(moment - _moment(c["issued_at"])) / timedelta(hours=1)
            for c in data["reseller_change_codes"] if c["used_at"] is None]
    assert any(valid - warn <= age < valid for age in ages)  # expiring soon
    assert any(age >= valid for age in ages)  # expired

    first_reminder = policy.invitations.reminder_days_after[0]
    assert any(
        c["invitation"]["status"] == "pending"
        and first_reminder <= (as_of - _local_day(c["invitation"]["sent_at"], c["timezone"])).days
        for c in data["customers"]
    )


def test_the_demo_file_imports_cleanly(engine: Engine, policy: Policy) -> None:
    text = demo_data.render(AS_OF)
    report = import_data(engine, text, policy, started_at=datetime.now(UTC))
    assert report.warnings == ()
    expected = json.loads(text)
    for section, counts in report.sections().items():
        assert counts.created == len(expected[section]), section
