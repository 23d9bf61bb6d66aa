"""Bad arguments, settings and policy values stop the command at once with exit 2 and
one line naming what is wrong; a record a pass cannot evaluate is reported once.

Each case is a one-line reproduction of input that used to end in a traceback, in a
pass that skipped a record at every run, or in mail lost without a word. The command
runs in process (its own entry point, `main`), for speed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, update
from structlog.testing import capture_logs

from testkit.cli import migrated_sqlite
from tests.import_samples import full_document, run
from worker.cli import main
from worker.config.policy import Policy, build_policy
from worker.db.schema import CUSTOMERS
from worker.errors import ConfigError
from worker.passes.run import run_pass
from worker.reports.status import dashboard


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """`main` points the logs at the captured stderr: point them back afterwards."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logging_restored: None,
            capsys: pytest.CaptureFixture[str]) -> Any:
    """`main(args)` over a migrated SQLite file, with `env` set: (exit status, stderr)."""
    url = migrated_sqlite(tmp_path)
    (tmp_path / "file.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for key in ("WORKER_CONFIG", "SMTP_URL", "HEALTH_PORT", "WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)

    def invoke(*args: str, **env: str) -> tuple[int, str]:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("WORKER_MAIL_DIR", str(tmp_path / "mail"))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own refusals
            code = int(exit_.code or 0)
        return code, capsys.readouterr().err

    return invoke


ARGUMENTS = [
    (("import", "file.json", "--max-mb", "nan"), "--max-mb"),
    (("import", "file.json", "--max-mb", "inf"), "--max-mb"),
    (("import", "file.json", "--max-mb", "-1"), "--max-mb"),
    (("import", "file.json", "--max-mb", "1e13"), "--max-mb"),
    (("events", "--after", "9223372036854775808"), "--after"),
    (("events", "replay", "9223372036854775808"), "SEQ"),
    (("run", "--once", "--as-of", "0001-01-01T00:00:00+14:00"), "--as-of"),
    (("run", "--once", "--as-of", "9999-12-31T23:59:59Z"), "--as-of"),
    (("events", "replay", "--from", "0001-01-01T00:00:00+14:00", "--to",
      "2027-01-01T00:00:00Z"), "--from"),
    (("forecast", "--days", "1", "--from", "9999-12-30"), "--from"),
    (("forecast", "--days", "100000000"), "--days"),
    (("forecast", "--days", "400", "--from", "2200-12-01"), "--days"),
    (("forecast", "--days", "1e3"), "--days"),
    (("--log-level", "loud", "status"), "--log-level"),
    (("preview", "--out", "/dev/null/x"), "--out"),
    (("preview", "--locale", "und"), "unknown locale 'und'"),
]


@pytest.mark.parametrize(("args", "named"), ARGUMENTS, ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else None)
def test_each_bad_argument_exits_2_with_one_line_naming_it(
        command: Any, args: tuple[str, ...], named: str) -> None:
    """No traceback, no endless forecast: the option and why, in one line."""
    code, err = command(*args)
    assert 2 == code
    assert named in err
    said = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert 1 == len(said), err  # argparse's usage lines aside
    assert "Traceback" not in err


def test_a_folder_or_a_binary_file_as_worker_config_exits_2(command: Any,
                                                            tmp_path: Path) -> None:
    """WORKER_CONFIG must name a readable TOML file."""
    binary = tmp_path / "policy.bin"
    binary.write_bytes(bytes(range(256)))
    for value in (str(tmp_path), str(binary), str(tmp_path / "missing.toml"), "\r0"):
        code, err = command("status", WORKER_CONFIG=value)
        assert (2, 1) == (code, len(err.strip().splitlines())), err
        assert "WORKER_CONFIG" in err


@pytest.mark.parametrize("url", ["postgres://u@[::1/x", "postgresql://u@host:99999/x",
                                 "mysql://u@host/x"])
def test_a_malformed_database_url_exits_2(command: Any, url: str) -> None:
    code, err = command("status", DATABASE_URL=url)
    assert (2, 1) == (code, len(err.strip().splitlines())), err
    assert "DATABASE_URL" in err


def test_a_mail_folder_that_cannot_be_written_stops_the_pass(command: Any) -> None:
    """`/dev/null/mail` used to leave every notice retrying until it was dead."""
    code, err = command("run", "--once", WORKER_MAIL_DIR="/dev/null/mail")
    assert 2 == code
    assert "WORKER_MAIL_DIR" in err


def test_a_missing_sqlite_file_is_not_created(command: Any, tmp_path: Path) -> None:
    """A typo in DATABASE_URL is said, not answered with an empty dashboard."""
    typo = tmp_path / "typo" / "x.db"
    for args in (("status",), ("run", "--once"), ("export",), ("import", "file.json")):
        code, err = command(*args, DATABASE_URL=f"sqlite:///{typo}")
        assert 2 == code, args
        assert "DATABASE_URL" in err
        assert "db upgrade" in err
    assert not typo.parent.exists()
    code, _err = command("db", "upgrade", DATABASE_URL=f"sqlite:///{typo}")
    assert 0 == code
    assert typo.exists()


POLICIES = [
    ({"renewal": {"upcoming_days_before": 1_000_000_000}}, "renewal.upcoming_days_before"),
    ({"renewal": {"upcoming_days_before": 1e9}}, "renewal.upcoming_days_before"),
    ({"codes": {"valid_hours": 10**12}}, "codes.valid_hours"),
    ({"catch_up": {"horizon_days": 10**10}}, "catch_up.horizon_days"),
    ({"schedule": {"pass_every_minutes": 10**12}}, "schedule.pass_every_minutes"),
    ({"schedule": {"heartbeat_seconds": 10**12}}, "schedule.heartbeat_seconds"),
    ({"shutdown": {"within_seconds": 10**12}}, "shutdown.within_seconds"),
    ({"payment": {"late_after_days": 61, "suspended_after_days": 31}}, "payment"),
    ({"codes": {"valid_hours": 24, "expiring_notice_hours_before": 48}}, "codes"),
    ({"renewal": {"upcoming_days_before": 10, "window_days_before": 30}}, "renewal"),
    ({"grace": {"lapse_after_days": 2}}, "grace"),
    ({"sender": {"default_locale": "xx-YY"}}, "sender.default_locale"),
    ({"sender": {"default_locale": "und"}}, "sender.default_locale"),
    ({"schedule": {"timezone": "localtime"}}, "schedule.timezone"),
    ({"sender": {"default_timezone": "Factory"}}, "sender.default_timezone"),
    ({"delivery": {"retry_delays_minutes": [10**9]}}, "delivery.retry_delays_minutes.0"),
]


@pytest.mark.parametrize(("values", "key"), POLICIES)
def test_policy_values_are_bounded_and_consistent(values: dict[str, Any], key: str) -> None:
    """Refused at start, naming the key (or the section whose values disagree)."""
    with pytest.raises(ConfigError) as refused:
        build_policy(values)
    assert key == refused.value.key


def test_a_bad_policy_value_in_worker_config_exits_2(command: Any, tmp_path: Path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text("[shutdown]\nwithin_seconds = 1000000000000\n", encoding="utf-8")
    code, err = command("status", WORKER_CONFIG=str(toml))
    assert 2 == code
    assert "shutdown.within_seconds" in err


def test_a_record_a_pass_cannot_evaluate_is_reported_once_and_counted(
        engine: Engine, policy: Policy) -> None:
    """Named in every pass's summary, warned about once, counted by `status`."""
    run(engine, policy, full_document())
    with engine.begin() as connection:
        connection.execute(update(CUSTOMERS).values(timezone="Mars/Olympus_Mons"))
    moment = datetime(2027, 2, 5, 10, tzinfo=UTC)
    with capture_logs() as first_logs:
        first = run_pass(engine, policy, moment, clock=lambda: moment)
    with capture_logs() as second_logs:
        second = run_pass(engine, policy, moment, clock=lambda: moment)
    with engine.connect() as connection:
        board = dashboard(connection)
    assert first.errors
    assert second.errors
    assert all("Mars/Olympus_Mons" in error["reason"] for error in second.errors)
    skipped = [entry for entry in first_logs if entry["event"] == "record_skipped"]
    assert len(skipped) == len(first.errors)
    assert [] == [entry for entry in second_logs if entry["event"] == "record_skipped"]
    assert board["unprocessable"]
    assert sum(board["unprocessable"].values()) >= 1
