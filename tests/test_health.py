"""The health verdict tells a process manager whether passes are really happening, and
the metrics are Prometheus text that prometheus-client's own parser reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from testkit.net import free_port
from worker.config.policy import Policy
from worker.db.engine import make_engine
from worker.passes.run import PassFailed, run_pass
from worker.service.health import verdict
from worker.service.metrics import exposition
from worker.support.instruments import record_delivery_latency

REAL = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ALLOWED = timedelta(minutes=45)


def test_unhealthy_until_a_pass_has_finished(engine: Engine) -> None:
    """A service that never completed a pass is not healthy."""
    judged = verdict(engine, REAL, ALLOWED)
    assert (503, "no pass has finished yet") == (judged.http_status, judged.reason)


def test_health_turns_stale_when_passes_stop(engine: Engine, policy: Policy) -> None:
    """200 while the last pass is recent; 503 once it is older than the allowance."""
    run_pass(engine, policy, REAL, clock=lambda: REAL)
    fresh = verdict(engine, REAL + timedelta(minutes=10), ALLOWED)
    stale = verdict(engine, REAL + timedelta(hours=2), ALLOWED)
    assert (200, "ok", "done") == (fresh.http_status, fresh.body()["status"],
                                   fresh.body()["last_pass"]["outcome"])
    assert (503, "last pass 1 finished 2 h 0 min ago (allowed 45 min)") == (
        stale.http_status, stale.reason)


def test_a_failed_pass_is_unhealthy_until_a_pass_succeeds(engine: Engine, policy: Policy) -> None:
    """The newest pass failing is the answer, whatever its age; the next success heals."""
    run_pass(engine, policy, REAL, clock=lambda: REAL)

    def broken(_moment: datetime) -> object:
        raise OperationalError("SELECT 1", {}, Exception("the server went away"))

    later = REAL + timedelta(minutes=1)
    with pytest.raises(PassFailed):
        run_pass(engine, policy, later, clock=lambda: later, deliver=broken)  # type: ignore[arg-type]
    failed = verdict(engine, later, ALLOWED)
    again = REAL + timedelta(minutes=2)
    run_pass(engine, policy, again, clock=lambda: again)
    healed = verdict(engine, again, ALLOWED)
    assert 503 == failed.http_status
    assert failed.reason.startswith("last pass 2 failed: OperationalError")
    assert (200, "last pass 3 finished 0 s ago (done)") == (healed.http_status, healed.reason)


def test_a_database_that_does_not_answer_is_unhealthy() -> None:
    """Nobody listens on the port: the verdict says so in one line, without raising."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    judged = verdict(engine, REAL, ALLOWED)
    engine.dispose()
    assert 503 == judged.http_status
    assert judged.reason.startswith("database unavailable: OperationalError")
    assert "\n" not in judged.reason


def test_metrics_parse_as_prometheus_text(engine: Engine, policy: Policy) -> None:
    """Process instruments and database gauges, read back by prometheus-client's parser."""
    run_pass(engine, policy, REAL, clock=lambda: REAL)
    record_delivery_latency(12.0)
    text = exposition(engine, lambda: REAL + timedelta(seconds=30)).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families.values() for s in family.samples}
    assert {"worker_passes", "worker_pass_duration_seconds", "worker_database_errors",
            "worker_delivery_latency_seconds", "worker_notifications", "worker_subscriptions",
            "worker_customers", "worker_pass_rows", "worker_last_success_age_seconds",
            "worker_database_up"} <= set(families)
    assert 30.0 == samples[("worker_last_success_age_seconds", ())]
    assert 1.0 == samples[("worker_database_up", ())]
    assert 1.0 == samples[("worker_pass_rows", (("outcome", "done"),))]
    assert 1.0 <= samples[("worker_passes_total", (("outcome", "done"),))]
    assert 1.0 <= samples[("worker_delivery_latency_seconds_count", ())]
    assert "histogram" == families["worker_delivery_latency_seconds"].type


def test_metrics_report_a_database_that_does_not_answer() -> None:
    """A scrape during an outage still answers, with `worker_database_up 0`."""
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    text = exposition(engine, lambda: REAL).decode()
    engine.dispose()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert 0.0 == families["worker_database_up"].samples[0].value
    assert "worker_notifications" not in families


def test_the_endpoint_listens_on_loopback_unless_told() -> None:
    """HEALTH_HOST defaults to 127.0.0.1; a value that is no address is named at start."""
    from worker.config.settings import load_settings
    from worker.errors import ConfigError

    assert "127.0.0.1" == load_settings({}).health_host
    assert "0.0.0.0" == load_settings({"HEALTH_HOST": "0.0.0.0"}).health_host
    with pytest.raises(ConfigError, match=r"^HEALTH_HOST: not an address or host name"):
        load_settings({"HEALTH_HOST": "a b"})


@pytest.mark.parametrize(("override", "key"), [
    ({"shutdown": {"within_seconds": 0}}, "shutdown.within_seconds"),
    ({"schedule": {"abandon_after_minutes": 1, "heartbeat_seconds": 30}}, "schedule"),
    ({"schedule": {"heartbeat_seconds": -1}}, "schedule.heartbeat_seconds"),
])
def test_lifecycle_settings_are_checked(override: dict[str, object], key: str) -> None:
    """A bound of zero, or a pass abandoned before three heartbeats, stops at start."""
    from worker.config.policy import build_policy
    from worker.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        build_policy(override)
    assert key == raised.value.key


def test_the_endpoint_answers_each_probe(engine: Engine, policy: Policy) -> None:
    """/livez never asks the database; /readyz turns 503 once the process is stopping;
    /metrics is Prometheus text; anything else is 404."""
    import json
    import urllib.error
    import urllib.request

    from worker.service.health import serve_health

    run_pass(engine, policy, REAL, clock=lambda: REAL)
    stopping = [False]
    port = free_port()
    server = serve_health(engine, "127.0.0.1", port, lambda: REAL, ALLOWED,
                          lambda: stopping[0])

    def get(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                return reply.status, reply.headers["Content-Type"], reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers["Content-Type"], error.read().decode()

    try:
        ready = get("/readyz")
        stopping[0] = True
        after = get("/readyz")
        live, healthz, metrics, missing = get("/livez"), get("/healthz"), get("/metrics"), \
            get("/nope")
    finally:
        server.shutdown()
        server.server_close()
    assert (200, "ok") == (ready[0], json.loads(ready[2])["status"])
    assert (503, "stopping") == (after[0], json.loads(after[2])["status"])
    assert (200, 200, 404) == (live[0], healthz[0], missing[0])
    assert metrics[1].startswith("text/plain; version=")
    assert "worker_database_up 1.0" in metrics[2]
