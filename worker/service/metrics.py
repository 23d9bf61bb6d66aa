"""Prometheus metrics, through prometheus-client's instruments and text exposition.

Two kinds:
- this process's own instruments, fed as things happen: passes by outcome and their
  duration (`record_pass`), database errors (`record_database_error`), delivery latency
  from the moment a notice was due to the server's acceptance (`record_delivery_latency`,
  called by the outbox's drain);
- gauges read from the database at each scrape (`DatabaseCollector`), so they tell the
  truth whichever replica did the work: notices by kind and delivery state,
  subscriptions per bucket, customers per standing, pass rows by outcome, the age of
  the last successful pass and whether the database answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from worker.db.schema import NOTIFICATIONS, PASSES
from worker.reports.status import dashboard
from worker.support.instruments import (
    DATABASE_ERRORS,
    DELIVERY_LATENCY,
    PASS_DURATION,
    PASSES_RUN,
    SUCCESS,
)


class _ProcessCollector(Collector):
    """This process's instruments, for a registry built per scrape."""

    def collect(self) -> Iterator[Metric]:
        for instrument in (PASSES_RUN, PASS_DURATION, DATABASE_ERRORS, DELIVERY_LATENCY):
            yield from instrument.collect()


class DatabaseCollector(Collector):
    """Gauges read from the database at each scrape; `worker_database_up` 0 when it
    cannot be read (the scrape itself still succeeds)."""

    def __init__(self, engine: Engine, now: Callable[[], datetime]) -> None:
        self.engine, self.now = engine, now

    def collect(self) -> Iterator[Metric]:
        try:
            facts = self._read()
        except Exception:  # a scrape reports the outage instead of failing
            yield _gauge("worker_database_up", "1 when the database answers", 0)
            return
        yield _gauge("worker_database_up", "1 when the database answers", 1)
        yield from facts

    def _read(self) -> list[Metric]:
        with self.engine.connect() as connection:
            board = dashboard(connection)
            by_kind = connection.execute(
                select(NOTIFICATIONS.c.kind, NOTIFICATIONS.c.status, func.count())
                .group_by(NOTIFICATIONS.c.kind, NOTIFICATIONS.c.status)).tuples().all()
            last_success = connection.scalar(
                select(func.max(PASSES.c.finished_at))
                .where(PASSES.c.outcome.in_(SUCCESS), PASSES.c.dry_run.is_(False),
                       PASSES.c.trigger != "forecast"))
        notices = GaugeMetricFamily("worker_notifications",
                                    "Notices by kind and delivery state",
                                    labels=["kind", "status"])
        for kind, status, count in by_kind:
            notices.add_metric([kind, status], count)
        facts: list[Metric] = [
            notices,
            _labelled("worker_subscriptions", "Subscriptions per bucket", "bucket",
                      board["subscriptions"]),
            _labelled("worker_customers", "Customers per payment standing", "standing",
                      board["customers"]),
            _labelled("worker_pass_rows", "Pass rows in the database by outcome (every "
                      "replica's)", "outcome", board["passes"]),
            _gauge("worker_suppressed_addresses", "Addresses no notice goes to (bounced)",
                   board["mail"]["suppressed"]),
            _gauge("worker_bounced_recipients", "Recipients recorded as bounced for good",
                   board["mail"]["bounced"]),
        ]
        if last_success is not None:
            facts.append(_gauge("worker_last_success_age_seconds",
                                "Seconds since the newest successful pass finished",
                                (self.now() - last_success).total_seconds()))
        return facts


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _labelled(name: str, documentation: str, label: str, counts: dict[str, Any]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([key], value)
    return family


def exposition(engine: Engine, now: Callable[[], datetime]) -> bytes:
    """The Prometheus text of this process's instruments and the database's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessCollector())
    registry.register(DatabaseCollector(engine, now))
    return generate_latest(registry)
