"""End to end: the real command through import, passes, export and forecast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testkit.cli import Result, run_cli
from tests.portfolio import as_json, portfolio

pytestmark = pytest.mark.e2e


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Any:
    def call(*args: str, **env: str) -> Result:
        return run_cli(*args, database_url=database_url, cwd=tmp_path, **env)
    return call


def write(tmp_path: Path, data: dict[str, Any], name: str = "portfolio.json") -> str:
    path = tmp_path / name
    path.write_text(as_json(data), encoding="utf-8")
    return str(path)


def test_import_passes_and_export_follow_the_calendar_day_by_day(worker: Any,
                                                                 tmp_path: Path) -> None:
    """Daily passes move s1 through its lifecycle on its customer's (Paris) dates."""
    assert worker("import", write(tmp_path, portfolio())).code == 0
    seen: dict[str, str] = {}
    for day in ("2027-01-28", "2027-01-29", "2027-02-12", "2027-02-13", "2027-03-14",
                "2027-03-15", "2027-03-25", "2027-03-26", "2027-03-28", "2027-03-29"):
        result = worker("run", "--once", "--as-of", f"{day}T09:00:00+01:00")
        assert result.code == 0, result.stderr
        exported = worker("export").json()
        seen[day] = next(s["status"] for s in exported["subscriptions"] if s["id"] == "s1")
    assert seen == {
        "2027-01-28": "active", "2027-01-29": "renewal_upcoming",
        "2027-02-12": "renewal_upcoming", "2027-02-13": "ready_for_renewal",
        "2027-03-14": "ready_for_renewal", "2027-03-15": "grace", "2027-03-25": "grace",
        "2027-03-26": "grace", "2027-03-28": "grace", "2027-03-29": "lapsed",
    }
    kinds = [(n["kind"], n["audience"]) for n in exported["notifications"] if n["ref"] == "s1"]
    assert kinds == [
        ("renewal_upcoming", "customer"), ("renewal_upcoming", "reseller"),
        ("renewal_window_open", "customer"), ("renewal_window_open", "reseller"),
        ("renewal_reminder", "customer"), ("renewal_reminder", "reseller"),
        ("subscription_expired", "customer"), ("subscription_expired", "reseller"),
        ("grace_ending", "customer"), ("grace_ending", "reseller"),
        ("subscription_lapsed", "customer"), ("subscription_lapsed", "reseller"),
    ]


def test_run_json_prints_only_json_on_stdout(worker: Any, tmp_path: Path) -> None:
    """Machine-readable output is stdout alone; logs go to stderr."""
    worker("import", write(tmp_path, portfolio()))
    result = worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z", "--json")
    assert result.code == 0
    summary = result.json()
    assert summary["queued"]["renewal_upcoming"] == 2
    assert "pass_finished" in result.stderr


def test_a_bad_import_lists_every_error_with_its_path_and_writes_nothing(
    worker: Any, tmp_path: Path
) -> None:
    """One invalid record rejects the file; every error is named; exit status 2."""
    data = portfolio()
    data["customers"][1]["timezone"] = "Europe/Pariss"
    data["subscriptions"][0]["licences"] = -1
    result = worker("import", write(tmp_path, data))
    assert result.code == 2
    assert "customers[1].timezone: unknown timezone 'Europe/Pariss'" in result.stderr
    assert "subscriptions[0].licences" in result.stderr
    exported = worker("export").json()
    assert (exported["customers"], exported["subscriptions"]) == ([], [])


def test_malformed_json_is_refused_with_exit_status_two(worker: Any, tmp_path: Path) -> None:
    """A file that is not JSON says where it breaks."""
    path = tmp_path / "broken.json"
    path.write_text('{"resellers": [', encoding="utf-8")
    result = worker("import", str(path))
    assert result.code == 2
    assert "line 1" in result.stderr


@pytest.mark.parametrize(("env", "key"), [
    ({"DATABASE_URL": "mysql://db/worker"}, "DATABASE_URL"),
    ({"SMTP_URL": "ftp://mail.example"}, "SMTP_URL"),
    ({"HEALTH_PORT": "99999"}, "HEALTH_PORT"),
])
def test_a_wrong_setting_stops_the_program_with_one_line_naming_it(
    worker: Any, env: dict[str, str], key: str
) -> None:
    """Configuration errors exit 2 at start, naming the variable."""
    result = worker("status", **env)
    assert result.code == 2
    assert key in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("toml", "key"), [
    ("[renewal]\nupcoming_days_befor = 40\n", "renewal.upcoming_days_befor"),
    ("[grace]\nlapse_after_days = -1\n", "grace.lapse_after_days"),
    ('[schedule]\ntimezone = "Europe/Pariss"\n', "schedule.timezone"),
])
def test_a_wrong_policy_file_stops_the_program_naming_the_key(
    worker: Any, tmp_path: Path, toml: str, key: str
) -> None:
    """WORKER_CONFIG overrides are validated: unknown keys, negative days, unknown zones."""
    path = tmp_path / "policy.toml"
    path.write_text(toml, encoding="utf-8")
    result = worker("status", WORKER_CONFIG=str(path))
    assert result.code == 2
    assert key in result.stderr


def test_a_policy_override_changes_the_rules_without_code(worker: Any, tmp_path: Path) -> None:
    """Every number is a default: a 60-day notice period is one TOML line away."""
    path = tmp_path / "policy.toml"
    path.write_text("[renewal]\nupcoming_days_before = 60\n", encoding="utf-8")
    worker("import", write(tmp_path, portfolio()))
    worker("run", "--once", "--as-of", "2027-01-15T10:00:00Z", WORKER_CONFIG=str(path))
    statuses = {s["id"]: s["status"] for s in worker("export").json()["subscriptions"]}
    assert statuses["s1"] == "renewal_upcoming"


def test_a_record_the_rules_cannot_read_makes_the_pass_exit_three(
    worker: Any, tmp_path: Path, database_url: str
) -> None:
    """The others are processed; the broken one is named in the summary and in a
    `record_skipped` JSON log line."""
    from sqlalchemy import text

    from worker.db.engine import make_engine

    worker("import", write(tmp_path, portfolio()))
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE customers SET timezone = 'Mars/Olympus' "
                                "WHERE id = 'c2'"))
    engine.dispose()
    result = worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z", "--json")
    assert result.code == 3
    names = {(error["record"], error["id"]) for error in result.json()["errors"]}
    assert ("subscription", "s2") in names
    # Off a terminal every log line is one JSON object; record_skipped names the record.
    events = [json.loads(line) for line in result.stderr.splitlines()]
    skipped = {(e["record"], e["id"]) for e in events if e["event"] == "record_skipped"}
    assert names == skipped
    assert all(e["reason"] for e in events if e["event"] == "record_skipped")
    [finished] = [e for e in events if e["event"] == "pass_finished"]
    assert finished["errors"] == len(names)
    statuses = {s["id"]: s["status"] for s in worker("export").json()["subscriptions"]}
    assert statuses["s1"] == "renewal_upcoming"


def test_dry_run_and_forecast_change_nothing(worker: Any, tmp_path: Path) -> None:
    """Rehearsals leave the database exactly as it was."""
    worker("import", write(tmp_path, portfolio()))
    worker("run", "--once", "--as-of", "2027-01-20T10:00:00Z")
    before = worker("export").json()
    dry = worker("run", "--once", "--as-of", "2027-03-20T10:00:00Z", "--dry-run")
    assert dry.code == 0
    would_queue = dry.stdout.split("  would queue:\n", 1)[1].split("  would emit:", 1)[0]
    planned = [line.split()[1:3] for line in would_queue.splitlines()]
    assert ["subscription_expired", "s1"] in planned
    assert f"notices queued: {len(planned)}\n" in dry.stdout
    result = worker("forecast", "--days", "60", "--from", "2027-01-21", "--format", "json")
    assert result.code == 0, result.stderr
    assert before == worker("export").json()
    days = result.json()["days"]
    assert 60 == len(days)
    flat = result.json()["notices"]
    assert {"date", "kind", "ref", "recipients"} <= set(flat[0])
    assert sum(len(day["notices"]) for day in days) == len(flat)
    by_day = {(n["kind"], n["ref"]): day["date"] for day in days for n in day["notices"]
              if n["audience"] == "customer"}
    assert by_day[("renewal_upcoming", "s1")] == "2027-01-29"
    assert by_day[("subscription_expired", "s1")] == "2027-03-15"
    changes = [(c["date"], c["ref"], c["from"], c["to"]) for day in days
               for c in day["changes"] if c["ref"] == "s1"]
    assert ("2027-03-15", "s1", "ready_for_renewal", "grace") in changes


def test_forecast_table_and_csv_are_readable(worker: Any, tmp_path: Path) -> None:
    """The default table and the CSV list the same events, line for line."""
    import csv
    import re

    worker("import", write(tmp_path, portfolio()))
    table = worker("forecast", "--days", "3", "--from", "2027-01-28")
    rows = worker("forecast", "--days", "3", "--from", "2027-01-28", "--format", "csv")
    assert 0 == table.code == rows.code
    assert rows.stdout.startswith("date,type,kind,ref,recipients,from,to\n")
    from_csv = []
    for row in csv.DictReader(rows.stdout.splitlines()):
        detail = (row["kind"] + " " + row["recipients"].replace(";", ", ")
                  if row["type"] == "notice" else f"{row['from']} -> {row['to']}")
        from_csv.append((row["date"], row["type"], row["ref"], detail))
    from_table = []
    for line in table.stdout.splitlines():
        day, kind, what, ref, rest = re.split(r"\s{2,}", line.strip())
        from_table.append((day, kind, ref, f"{what} {rest}" if kind == "notice" else rest))
    assert from_csv == from_table
    assert ("2027-01-29", "notice", "s1", "renewal_upcoming paul@dupont.example") in from_csv
    assert {"notice", "change"} == {event[1] for event in from_csv}


def test_status_shows_the_dashboard(worker: Any, tmp_path: Path) -> None:
    """Buckets, standings and delivery states as the last pass left them."""
    worker("import", write(tmp_path, portfolio()))
    worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z")
    result = worker("status", "--format", "json")
    assert result.code == 0
    board = result.json()
    assert board["subscriptions"] == {"to_renew": 3}
    assert board["customers"] == {"current": 2, "late": 1}
    text_board = worker("status").stdout
    assert "Subscriptions per bucket (3)" in text_board


def test_export_csv_has_a_row_per_record(worker: Any, tmp_path: Path) -> None:
    """CSV export: one table, a `section` column naming each row's kind of record."""
    worker("import", write(tmp_path, portfolio()))
    worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z")
    lines = worker("export", "--format", "csv").stdout.splitlines()
    assert lines[0].startswith("section,id,status")
    assert any(line.startswith("subscriptions,s1,renewal_upcoming") for line in lines)


def test_as_of_without_an_offset_is_refused(worker: Any) -> None:
    """A moment must say its offset: 'Z' or '+01:00'."""
    result = worker("run", "--once", "--as-of", "2027-02-05T10:00:00")
    assert result.code == 2
    assert "--as-of" in result.stderr


def test_db_upgrade_then_python_dash_m_worker_works(database_url: str, tmp_path: Path) -> None:
    """Both entry points exist and `db upgrade` is idempotent."""
    import subprocess
    import sys

    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "worker", "db", "upgrade"],
                              capture_output=True, text=True, check=False, cwd=tmp_path,
                              env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                              timeout=60)
        assert done.returncode == 0, done.stderr


def test_run_text_summary_names_what_changed(worker: Any, tmp_path: Path) -> None:
    """The default summary is for people: changes and notices counted, and broken down
    by kind (the counts agree with what the export holds)."""
    import re

    worker("import", write(tmp_path, portfolio()))
    result = worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z")
    exported = worker("export").json()
    queued = re.search(r"notices queued: (\d+)\n", result.stdout)
    changes = re.search(r"status changes: (\d+)\n", result.stdout)
    assert queued is not None
    assert changes is not None
    assert int(queued[1]) == len(exported["notifications"]) > 0
    assert "3  subscription.status: pending_start -> active" in result.stdout
    assert "2  renewal_upcoming" in result.stdout
    assert "records skipped: 0" in result.stdout


def test_a_pass_delivers_over_smtp_within_each_recipients_send_window(
    worker: Any, tmp_path: Path
) -> None:
    """Paris mail goes at 11:00 local; Los Angeles (02:00) waits; a re-run sends nothing twice."""
    from email import message_from_bytes, policy

    from testkit.smtp import smtp_server

    worker("import", write(tmp_path, portfolio()))
    with smtp_server() as server:
        first = worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z", "--json",
                       SMTP_URL=server.url())
        again = worker("run", "--once", "--as-of", "2027-02-05T10:05:00Z", "--json",
                       SMTP_URL=server.url())
        received = list(server.received)
    assert 0 == first.code, first.stderr
    assert first.json()["delivery"]["sent"] == len(received)
    assert "sent" not in again.json()["delivery"]
    messages = [message_from_bytes(r.data, policy=policy.default) for r in received]
    kinds = {(m["X-Notification-Kind"], m["To"]) for m in messages}
    assert ("renewal_upcoming", "Paul Dupont <paul@dupont.example>") in kinds
    assert all(m["Auto-Submitted"] == "auto-generated" and m["Message-ID"] for m in messages)
    assert not [m for m in messages if "harbour.example" in str(m["To"])]
    exported = {(n["kind"], n["ref"], n["audience"]): n for n in worker("export").json()[
        "notifications"]}
    assert "sent" == exported[("renewal_upcoming", "s1", "customer")]["status"]
    assert exported[("renewal_upcoming", "s1", "customer")]["sent_at"]
    assert "queued" == exported[("renewal_window_open", "s2", "customer")]["status"]


def test_without_smtp_url_messages_are_written_as_eml_files(worker: Any, tmp_path: Path) -> None:
    """The file transport catches mail locally, and the run says where."""
    worker("import", write(tmp_path, portfolio()))
    result = worker("run", "--once", "--as-of", "2027-02-05T10:00:00Z")
    assert 0 == result.code, result.stderr
    files = sorted((tmp_path / "mail").rglob("*.eml"))
    assert files
    assert "mail transport: files under" in result.stdout
    assert b"X-Notification-Kind:" in files[0].read_bytes()
