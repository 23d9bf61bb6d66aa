"""One outage, one pair of log lines, whichever part of the process notices it."""

from __future__ import annotations

from structlog.testing import capture_logs

from worker.support.outage import SETTLE_SECONDS, OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logged(steps: list[tuple[float, str]]) -> list[str]:
    """Run (seconds later, "fail" | "ok") steps; the events logged above debug level."""
    clock = Clock()
    outages = OutageLog(clock)
    with capture_logs() as logs:
        for later, what in steps:
            clock.now += later
            if what == "fail":
                outages.failed("connection refused")
            else:
                outages.answered()
    return [entry["event"] for entry in logs if entry["log_level"] != "debug"]


def test_many_failures_of_one_outage_are_one_warning_and_one_recovery() -> None:
    assert ["database_unavailable", "database_available"] == logged(
        [(0, "fail"), (1, "fail"), (1, "fail"), (1, "ok"), (1, "ok")])


def test_a_held_connection_failing_just_after_the_recovery_is_the_same_outage() -> None:
    """The drain's held connection fails a moment after another reconnected: no second
    warning, no second recovery."""
    assert ["database_unavailable", "database_available"] == logged(
        [(0, "fail"), (2, "ok"), (1, "fail"), (0.5, "ok")])


def test_a_failure_once_the_database_has_settled_is_a_new_outage() -> None:
    assert ["database_unavailable", "database_available"] * 2 == logged(
        [(0, "fail"), (2, "ok"), (SETTLE_SECONDS + 1, "fail"), (1, "ok")])


def test_answers_without_an_outage_log_nothing() -> None:
    assert [] == logged([(0, "ok"), (5, "ok")])
