"""`start`: the service runs a pass at once, on its schedule, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.cli import command, run_cli
from tests.portfolio import as_json, portfolio
from tests.smtp_server import free_port
from worker.db.engine import make_engine
from worker.db.schema import PASSES

pytestmark = pytest.mark.e2e


def _passes(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(
                select(func.count()).select_from(PASSES).where(PASSES.c.outcome != "running")
            ) or 0)
    finally:
        engine.dispose()


def test_start_runs_a_pass_and_stops_on_sigterm(database_url: str, tmp_path: Path) -> None:
    """An operator's SIGTERM ends the service after the pass in hand, with status 0."""
    data = tmp_path / "portfolio.json"
    data.write_text(as_json(portfolio()), encoding="utf-8")
    assert run_cli("import", str(data), database_url=database_url, cwd=tmp_path).code == 0
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "WORKER_MAIL_DIR": str(tmp_path / "mail"),
           "HEALTH_PORT": str(port)}
    service = subprocess.Popen([*command(), "start"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _passes(database_url) == 0 and time.monotonic() < deadline:
            assert service.poll() is None, service.communicate()[1]
            time.sleep(0.2)
        assert _passes(database_url) >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            healthz = json.loads(reply.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert "ok" == healthz["status"]
        assert 'worker_subscriptions{bucket="' in metrics
        assert "worker_last_pass_ok 1" in metrics
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=60)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, stderr
    assert "service_stopped" in stderr
