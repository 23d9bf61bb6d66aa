"""This process's own Prometheus instruments, fed as things happen: passes by outcome and
their duration (`record_pass`), database errors (`record_database_error`), delivery
latency from the moment a notice was due to the server's acceptance
(`record_delivery_latency`, called by the mail drain). `worker.service.metrics` exposes
them beside the gauges it reads from the database.

Imports: prometheus-client only.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PASSES_RUN = Counter("worker_passes", "Passes this process ran, by outcome", ["outcome"],
                     registry=None)
PASS_DURATION = Histogram(
    "worker_pass_duration_seconds", "Duration of the passes this process ran",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800), registry=None)
DATABASE_ERRORS = Counter("worker_database_errors",
                          "Database errors met by passes and deliveries of this process",
                          registry=None)
DELIVERY_LATENCY = Histogram(
    "worker_delivery_latency_seconds",
    "From the moment a notice could go out to the server's acceptance",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 72 * 3600), registry=None)
SUCCESS = ("done", "partial")


def record_pass(outcome: str, seconds: float) -> None:
    PASSES_RUN.labels(outcome=outcome).inc()
    if outcome in SUCCESS:
        PASS_DURATION.observe(seconds)


def record_database_error() -> None:
    DATABASE_ERRORS.inc()


def record_delivery_latency(seconds: float) -> None:
    """One message accepted by the server `seconds` after it was due (the later of its
    creation and its `not_before`). Negative values (clock skew) count as 0."""
    DELIVERY_LATENCY.observe(max(0.0, seconds))
