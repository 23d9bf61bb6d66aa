#!/usr/bin/env python3
"""Benchmark: what does a portal's daily re-send of its whole state cost?

    python scripts/bench_reimport.py                 # 20k subscriptions, SQLite
    python scripts/bench_reimport.py --count 100000
    python scripts/bench_reimport.py --database-url postgresql+psycopg://user@host/db
    python scripts/bench_reimport.py --json          # one JSON object on stdout

In one run, on a fresh database: the file is imported (the baseline), one pass moves
a year of anniversaries, pending changes and extended first terms on, then the same file
is imported again (it must change nothing) and checked with `--dry-run`. The figures are
seconds and records per second; the ratios compare each re-send with the first import.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from worker.config.policy import load_policy
from worker.db.engine import make_engine, upgrade
from worker.importing.load import import_data
from worker.passes.run import run_pass
from worker.support.logs import configure_logging

START = date(2026, 1, 1)


def portfolio(count: int, seed: int = 7) -> dict[str, Any]:
    """`count` subscriptions over 50 customers: some extended, some with a pending change."""
    rng = random.Random(seed)
    customers = [{"id": f"c{n}", "reseller_id": "r1", "name": f"Customer {n}",
                  "timezone": "Europe/Paris", "admins": [{"name": "A", "email": f"a{n}@x.example"}]}
                 for n in range(50)]
    subscriptions = []
    for n in range(count):
        start = START + timedelta(days=rng.randrange(365))
        term = rng.choice([1, 12, 12, 12, 14, 24])
        subscriptions.append({
            "id": f"s{n}", "customer_id": f"c{n % 50}", "product": "TBox", "licences": 1 + n % 40,
            "start_date": start.isoformat(),
            "anniversary_date": (start + timedelta(days=round(term * 30.44))).isoformat(),
            "term_months": term, "auto_renew": rng.random() < 0.7,
            "pending_change": {"term_months": 1} if rng.random() < 0.1 else None})
    return {"resellers": [{"id": "r1", "name": "Reseller", "email": "ops@r.example",
                           "timezone": "Europe/Paris"}],
            "customers": customers, "subscriptions": subscriptions}


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure_once(url: str, count: int) -> dict[str, float]:
    """One run on a fresh database: the seconds of each step."""
    policy = load_policy()
    engine = make_engine(url)
    upgrade(engine)
    raw = json.dumps(portfolio(count))
    first, _ = timed(lambda: import_data(engine, raw, policy, started_at=datetime.now(UTC)))
    moment = datetime(2027, 12, 31, 9, tzinfo=UTC)
    passed, _ = timed(lambda: run_pass(engine, policy, moment))
    again, report = timed(lambda: import_data(engine, raw, policy, started_at=datetime.now(UTC)))
    if report.changed:
        raise SystemExit("the same file changed something: the re-import is not safe")
    dry, _ = timed(lambda: import_data(engine, raw, policy, dry_run=True,
                                       started_at=datetime.now(UTC)))
    engine.dispose()
    return {"first": first, "passed": passed, "again": again, "dry": dry}


def measure(urls: list[str], count: int) -> list[dict[str, Any]]:
    """Each step's best of `len(urls)` runs, each on its own fresh database (a single
    run of a second or so swung by a quarter with what ran just before it)."""
    runs = [measure_once(url, count) for url in urls]
    best = {step: min(run[step] for run in runs) for step in runs[0]}
    first, passed, again, dry = best["first"], best["passed"], best["again"], best["dry"]
    baseline = f"first import of {count} subscriptions"

    def row(figure: str, value: float, unit: str, ratio: float | None,
            aim: str | None) -> dict[str, Any]:
        return {"figure": figure, "value": round(value, 3), "unit": unit,
                "baseline": baseline if ratio is not None else None,
                "ratio": None if ratio is None else round(ratio, 2), "aim": aim}

    return [
        row(baseline, first, "s", None, None),
        row("the pass that moves a year on", passed, "s", None, None),
        row("the same file again (no change)", again, "s", again / first, "<= 1.0"),
        row("the same file, --dry-run", dry, "s", dry / first, "<= 1.0"),
        row("records re-checked per second", (count + 51) / again, "records/s", None, None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--database-url", help="an empty database, one run only "
                        "(default: throwaway SQLite files, best of --runs)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    configure_logging(json=True, level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-reimport-") as folder:
        urls = ([args.database_url] if args.database_url else
                [f"sqlite:///{Path(folder) / f'bench-{run}.db'}" for run in range(args.runs)])
        rows = measure(urls, args.count)
    if args.json:
        print(json.dumps({"bench": "reimport", "rows": rows}))
        return
    for item in rows:
        ratio = f"  ({item['ratio']}x the first import; aim {item['aim']})" if item["ratio"] else ""
        print(f"{item['figure']:<42} {item['value']:>10,.3f} {item['unit']}{ratio}")
    print(f"command: {' '.join([sys.executable, *sys.argv])}", file=sys.stderr)


if __name__ == "__main__":
    main()
