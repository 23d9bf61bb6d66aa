"""The health endpoint tells a process manager whether passes are really happening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from worker.health import health, metrics
from worker.passes import run_pass
from worker.policy import Policy

REAL = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_health_is_503_until_a_pass_has_finished(engine: Engine) -> None:
    """A service that never completed a pass is not healthy."""
    assert (503, {"status": "no pass yet"}) == health(engine, REAL, timedelta(minutes=45))


def test_health_turns_stale_when_passes_stop(engine: Engine, policy: Policy) -> None:
    """200 while the last pass is recent; 503 once it is older than the allowance."""
    run_pass(engine, policy, REAL, clock=lambda: REAL)
    fresh, body = health(engine, REAL + timedelta(minutes=10), timedelta(minutes=45))
    stale, _ = health(engine, REAL + timedelta(hours=2), timedelta(minutes=45))
    assert (200, "ok", "done") == (fresh, body["status"], body["last_pass"]["outcome"])
    assert 503 == stale


def test_metrics_are_prometheus_text(engine: Engine, policy: Policy) -> None:
    """Gauges with HELP and TYPE lines, one sample per label value."""
    run_pass(engine, policy, REAL, clock=lambda: REAL)
    text = metrics(engine, REAL + timedelta(seconds=30))
    assert "# TYPE worker_last_pass_age_seconds gauge" in text
    assert "worker_last_pass_age_seconds 30.0" in text
