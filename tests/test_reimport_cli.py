"""End to end: a portal that re-sends its whole state, through the real command.

Importing the file already imported, after passes moved the subscription on, changes
nothing: neither a pending change already applied nor an extended first term already
ended comes back (README, "Import format"; docs/rules.md, anniversaries and pending change).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from testkit.cli import Result, run_cli
from tests.portfolio import portfolio

pytestmark = pytest.mark.e2e

PARIS_CUSTOMER = portfolio()["customers"][0]


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Any:
    def call(*args: str) -> Result:
        result = run_cli(*args, database_url=database_url, cwd=tmp_path)
        assert result.code == 0, result.stderr
        return result
    return call


def one_subscription(tmp_path: Path, name: str = "portal.json", **fields: Any) -> str:
    """The portal's whole state: one reseller, its Paris customer, one subscription."""
    subscription = {"id": "s1", "customer_id": "c1", "product": "TBox", "licences": 10,
                    "start_date": "2026-03-15", "anniversary_date": "2027-03-15",
                    "term_months": 12, "auto_renew": True, **fields}
    data = portfolio(customers=[PARIS_CUSTOMER], subscriptions=[subscription],
                     purchase_authorizations=[], reseller_change_codes=[])
    data["resellers"] = data["resellers"][:1]
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def pass_at(worker: Any, day: str) -> None:
    worker("run", "--once", "--as-of", f"{day}T09:00:00+01:00")


def s1(worker: Any) -> dict[str, Any]:
    exported = worker("export").json()
    found: dict[str, Any] = next(s for s in exported["subscriptions"] if s["id"] == "s1")
    found["notices"] = sorted({(n["kind"], n["occasion"]) for n in exported["notifications"]
                               if n["ref"] == "s1"})
    return found


def test_a_pending_change_applied_stays_applied_when_the_same_file_comes_again(
        worker: Any, tmp_path: Path) -> None:
    """Annual → monthly at the AD; the portal's unchanged file neither brings the annual
    term back nor a renewal notice for the monthly term, and each AD moves by one month."""
    file = one_subscription(tmp_path, pending_change={"term_months": 1})
    worker("import", file)
    pass_at(worker, "2027-03-15")
    applied = s1(worker)
    assert (12, 1, "2027-04-15") == (applied["term_months"], applied["current_term_months"],
                                    applied["anniversary_date"])
    assert "no change" == worker("import", file, "--dry-run").stdout.strip()
    worker("import", file)
    for day in ("2027-03-20", "2027-04-15", "2027-05-15"):
        pass_at(worker, day)
    after = s1(worker)
    assert ("2027-06-15", 12, 1, "active") == (
        after["anniversary_date"], after["term_months"], after["current_term_months"],
        after["status"])
    assert [("auto_renewed", "2027-03-15"), ("term_change_applied", "2027-03-15")] == [
        notice for notice in after["notices"] if notice[1] >= "2027-03-15"]
    rows = list(csv.DictReader(io.StringIO(worker("export", "--format", "csv").stdout)))
    assert [("12", "1")] == [(row["term_months"], row["current_term_months"])
                             for row in rows if row["section"] == "subscriptions"]


def test_an_extended_first_term_ended_stays_ended_when_the_same_file_comes_again(
        worker: Any, tmp_path: Path) -> None:
    """A 14-month first term renews for 12 months; re-importing `term_months: 14` does not
    make the next term 14 months long again (2029-03-10, not 2029-05-10)."""
    file = one_subscription(tmp_path, start_date="2026-01-10", anniversary_date="2027-03-10",
                            term_months=14)
    worker("import", file)
    pass_at(worker, "2027-03-10")
    ended = s1(worker)
    assert ("2028-03-10", 12) == (ended["anniversary_date"], ended["current_term_months"])
    worker("import", file)
    pass_at(worker, "2028-03-10")
    after = s1(worker)
    assert ("2029-03-10", 14, 12) == (after["anniversary_date"], after["term_months"],
                                      after["current_term_months"])
    assert [("auto_renewed", "2027-03-10"), ("auto_renewed", "2028-03-10")] == [
        notice for notice in after["notices"] if notice[0] == "auto_renewed"]


def test_dry_run_lists_each_change_and_each_ignored_value_and_writes_nothing(
        worker: Any, tmp_path: Path) -> None:
    """Record by record, in the text report and as JSON on stdout alone."""
    worker("import", one_subscription(tmp_path))
    changed = one_subscription(tmp_path, "changed.json", licences=12,
                               anniversary_date="2027-03-10", auto_renew=False)
    before = worker("export").stdout
    text = worker("import", changed, "--dry-run")
    assert [
        "subscriptions[s1].licences: 10 → 12",
        "subscriptions[s1].auto_renew: true → false",
        "subscriptions[s1].anniversary_date: ignored, earlier than the one held (2027-03-15)",
    ] == text.stdout.splitlines()
    assert "would import (nothing written)" in text.stderr
    report = worker("import", changed, "--dry-run", "--json").json()
    assert (True, True, None) == (report["dry_run"], report["changed"], report["import_id"])
    assert [{
        "section": "subscriptions", "id": "s1", "outcome": "updated",
        "changes": [{"field": "licences", "from": 10, "to": 12},
                    {"field": "auto_renew", "from": True, "to": False}],
        "notes": [{"field": "anniversary_date",
                   "note": "ignored, earlier than the one held (2027-03-15)"}],
    }] == report["records"]
    assert before == worker("export").stdout
    real = worker("import", changed, "--json").json()
    assert (False, 1) == (real["dry_run"], real["subscriptions"]["updated"])
    assert isinstance(real["import_id"], int)
    assert ["no change",
            "subscriptions[s1].anniversary_date: ignored, earlier than the one held (2027-03-15)",
            ] == worker("import", changed, "--dry-run").stdout.splitlines()
