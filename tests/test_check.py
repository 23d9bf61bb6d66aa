"""`renewal-worker check`: /healthz's condition as an exit status and one line, for
platforms without HTTP probes, driven as a subprocess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from testkit.cli import migrated_sqlite, run_cli
from testkit.net import free_port
from worker.db.engine import make_engine, upgrade
from worker.db.schema import PASSES

pytestmark = pytest.mark.e2e


def database_with(path: Path, *passes: tuple[str, timedelta, str | None]) -> str:
    """A migrated SQLite file holding pass rows (outcome, finished how long ago, error)."""
    url = f"sqlite:///{path / 'worker.db'}"
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for outcome, ago, error in passes:
            connection.execute(insert(PASSES).values(
                started_at=now - ago, finished_at=now - ago, as_of=now - ago, dry_run=False,
                trigger="schedule", outcome=outcome, counts={}, errors=[], error=error))
    engine.dispose()
    return url


@pytest.mark.parametrize(("passes", "code", "line"), [
    ((), 1, "unhealthy: no pass has finished yet"),
    ((("done", timedelta(minutes=3), None),), 0, "ok: last pass 1 finished 3 min ago (done)"),
    ((("partial", timedelta(minutes=3), None),), 0,
     "ok: last pass 1 finished 3 min ago (partial)"),
    ((("done", timedelta(hours=2), None),), 1,
     "unhealthy: last pass 1 finished 2 h 0 min ago (allowed 45 min)"),
    ((("done", timedelta(minutes=9), None), ("failed", timedelta(minutes=3), "Boom: no")), 1,
     "unhealthy: last pass 2 failed: Boom: no"),
    ((("done", timedelta(minutes=9), None), ("interrupted", timedelta(minutes=3), None),
      ("abandoned", timedelta(minutes=1), "abandoned: gone")), 0,
     "ok: last pass 1 finished 9 min ago (done)"),
], ids=["no-pass", "recent", "recent-partial", "stale", "failed", "interrupted-abandoned"])
def test_check_exits_on_the_health_condition_with_one_line(
    tmp_path: Path, passes: tuple[tuple[str, timedelta, str | None], ...], code: int, line: str
) -> None:
    """0 when the newest ended pass is recent and did not fail; 1 otherwise, saying why.
    Interrupted and abandoned passes say nothing about the service's health."""
    result = run_cli("check", database_url=database_with(tmp_path, *passes), cwd=tmp_path)
    assert (code, line) == (result.code, result.stdout.strip())
    assert 1 == len(result.stdout.splitlines())


def test_check_fails_when_the_database_does_not_answer(tmp_path: Path) -> None:
    """Nobody listens: exit 1 and one line naming the database, without a traceback."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/worker"
    result = run_cli("check", database_url=url, cwd=tmp_path)
    assert 1 == result.code
    assert result.stdout.startswith("unhealthy: database unavailable: OperationalError: ")
    assert 1 == len(result.stdout.splitlines())
    assert "Traceback" not in result.stderr


def test_check_is_ok_after_a_real_pass(tmp_path: Path) -> None:
    """The command an operator runs after `run --once` agrees with /healthz."""
    url = migrated_sqlite(tmp_path)
    assert 0 == run_cli("run", "--once", database_url=url, cwd=tmp_path).code
    result = run_cli("check", database_url=url, cwd=tmp_path)
    assert 0 == result.code
    assert result.stdout.startswith("ok: last pass 1 finished ")
