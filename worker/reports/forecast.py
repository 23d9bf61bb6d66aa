"""`forecast`: one simulated pass a day on a private copy of the state.

The copy is a temporary SQLite database filled from the live one, so a forecast never
holds locks on, or writes to, the database the service uses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from worker.config.policy import Policy
from worker.db.engine import make_engine
from worker.db.schema import metadata
from worker.passes.run import run_pass

_COPIED = ("resellers", "customers", "subscriptions", "purchase_authorizations",
           "reseller_change_codes", "passes", "notifications")
_ROWS_AT_ONCE = 5_000


@contextmanager
def copy_of(engine: Engine) -> Iterator[Engine]:
    """A scratch SQLite copy of every table a pass reads."""
    with tempfile.TemporaryDirectory(prefix="worker-forecast-") as folder:
        scratch = make_engine(f"sqlite:///{Path(folder) / 'copy.db'}")
        metadata.create_all(scratch)
        with engine.connect() as source, scratch.begin() as target:
            for name in _COPIED:
                table = metadata.tables[name]
                result = source.execution_options(yield_per=_ROWS_AT_ONCE).execute(
                    select(table))
                for rows in result.mappings().partitions():
                    target.execute(table.insert(), [dict(row) for row in rows])
        try:
            yield scratch
        finally:
            scratch.dispose()


def forecast(engine: Engine, policy: Policy, first_day: date, days: int) -> list[dict[str, Any]]:
    """Each simulated day with the notices it would create and the changes it would make."""
    zone = ZoneInfo(policy.schedule.timezone)
    report: list[dict[str, Any]] = []
    with copy_of(engine) as scratch:
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            moment = datetime.combine(day, policy.schedule.forecast_pass_at, tzinfo=zone)
            summary = run_pass(scratch, policy, moment, trigger="forecast")
            report.append({
                "date": day.isoformat(), "as_of": moment.isoformat(),
                "notices": [{**notice, "occasion_date": notice["date"], "date": day.isoformat()}
                            for notice in summary.notices],
                "changes": [{**change, "effective_on": change["date"], "date": day.isoformat()}
                            for change in summary.transitions],
                "errors": summary.errors,
            })
    return report
