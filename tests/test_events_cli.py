"""End to end: `events`, `events replay`, `history` and the dry run's events, as an operator
runs them (the real command as a subprocess)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from testkit.cli import Result, migrated_sqlite, run_cli
from tests.portfolio import as_json, portfolio
from worker.cli import main

pytestmark = pytest.mark.e2e
AS_OF = "2027-03-20T10:00:00Z"


@pytest.fixture
def worker(database_url: str, tmp_path: Path) -> Any:
    def call(*args: str, **env: str) -> Result:
        return run_cli(*args, database_url=database_url, cwd=tmp_path, **env)
    return call


def imported(worker: Any, tmp_path: Path) -> None:
    path = tmp_path / "portfolio.json"
    path.write_text(as_json(portfolio()), encoding="utf-8")
    assert 0 == worker("import", str(path)).code


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_feed_lists_what_a_pass_emitted_after_a_dry_run_listed_it(
    worker: Any, tmp_path: Path
) -> None:
    """The dry run lists events and writes none; the pass writes the same; `events`
    pages through them by seq, as JSON and as a table; without an endpoint a replay
    pushes nothing and says so."""
    imported(worker, tmp_path)
    dry = worker("run", "--once", "--as-of", AS_OF, "--dry-run", "--json")
    assert 0 == dry.code, dry.stderr
    assert "no events\n" == worker("events").stdout
    assert 0 == worker("run", "--once", "--as-of", AS_OF, "--json").code
    page = worker("events", "--format", "json", "--limit", "1000").json()
    listed = [(e["type"], e["subject_id"], e["data"]) for e in dry.json()["events"]]
    passed = [(e["type"], e["subject"]["id"], e["data"]) for e in page["events"]
              if not e["type"].startswith("notification.")]
    assert listed == passed
    first = page["events"][0]
    assert {"seq", "id", "type", "timestamp", "data"} <= first.keys()
    seqs = [e["seq"] for e in page["events"]]
    after = worker("events", "--after", str(seqs[1]), "--limit", "2", "--format", "json").json()
    assert (seqs[2:4], seqs[3], True) == (
        [e["seq"] for e in after["events"]], after["next_after"], after["more"])
    table = worker("events", "--limit", "3").stdout.splitlines()
    assert table[0].split() == ["seq", "timestamp", "type", "what"]
    assert 4 == len(table)
    assert "s1: pending_start -> active on 2026-03-15" in table[1]
    replay = worker("events", "replay", str(seqs[0]), str(seqs[1]))
    assert 2 == replay.code
    assert "no webhook endpoint is configured" in replay.stderr
    assert "2 event(s) selected, nothing pushed" in replay.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_history_tells_a_records_story_and_refuses_an_unknown_id(
    worker: Any, tmp_path: Path
) -> None:
    imported(worker, tmp_path)
    assert 0 == worker("run", "--once", "--as-of", AS_OF).code
    story = worker("history", "c1", "--format", "json")
    assert 0 == story.code, story.stderr
    data = story.json()
    assert [{"type": "customer", "id": "c1"}] == [
        {"type": r["type"], "id": r["id"]} for r in data["records"]]
    assert ("suspended", "active") == (data["records"][0]["account_state"],
                                       data["records"][0]["person_account_state"])
    entries = [e["entry"] for e in data["timeline"]]
    assert {"change", "notice", "event"} == set(entries)
    notice = next(e for e in data["timeline"] if e["entry"] == "notice")
    assert ("sent", "paul@dupont.example", "sent") == (
        notice["status"], notice["recipients"][0]["address"],
        notice["recipients"][0]["status"])
    table = worker("history", "c1").stdout
    assert "change  customer.payment_standing: late -> suspended (effective 2027-03-04" in table
    assert "customer.account_state_changed active -> suspended" in table
    unknown = worker("history", "nobody")
    assert (2, "") == (unknown.code, unknown.stdout)
    assert "no subscription, customer, code or reseller has the id 'nobody'" in unknown.stderr


BAD = [
    (("events", "--after", "x"), "--after: not a whole number: 'x'"),
    (("events", "--limit", "0"), "--limit: 0 is out of range"),
    (("events", "replay"), "give sequence numbers, or both --from T and --to T"),
    (("events", "replay", "abc"), "SEQ: not a whole number: 'abc'"),
    (("events", "replay", "1", "--from", "2027-01-01T00:00Z", "--to", "2027-01-02T00:00Z"),
     "not both"),
    (("events", "replay", "--from", "2027-01-01T00:00Z"), "both --from T and --to T"),
    (("events", "replay", "--from", "yesterday", "--to", "2027-01-02T00:00Z"),
     "--from: not an ISO 8601 moment: 'yesterday'"),
    (("events", "replay", "--from", "2027-01-02T00:00", "--to", "2027-01-03T00:00Z"),
     "--from: '2027-01-02T00:00' has no offset"),
    (("events", "replay", "--from", "2027-01-02T00:00Z", "--to", "2027-01-01T00:00Z"),
     "--from must come before --to"),
    (("events", "replay", "999"), "no event has seq 999"),
]


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """`main` points the logs at the captured stderr: point them back afterwards."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_feed_and_replay_arguments_exit_two_with_one_clear_line(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every case through the command's own entry point (in process, for speed)."""
    monkeypatch.setenv("DATABASE_URL", migrated_sqlite(tmp_path))
    monkeypatch.delenv("WORKER_CONFIG", raising=False)
    code = main(list(args))
    captured = capsys.readouterr()
    assert 2 == code
    assert message in captured.err
    assert "" == captured.out


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_arguments_exit_two_from_the_installed_command(worker: Any) -> None:
    """The same, as an operator's shell sees it."""
    for args, message in (BAD[0], BAD[3], BAD[-1]):
        result = worker(*args)
        assert (2, "") == (result.code, result.stdout)
        assert message in result.stderr
