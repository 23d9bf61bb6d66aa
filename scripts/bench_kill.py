#!/usr/bin/env python3
"""Benchmark: how many notices does a SIGKILL at full speed send twice?

    python scripts/bench_kill.py                   # 5 kills, 2,000 notices each, SQLite
    python scripts/bench_kill.py --postgres        # a throwaway PostgreSQL server
    python scripts/bench_kill.py --kills 10 --json

Per kill, against a local aiosmtpd sink in its own process that counts every
Message-ID it accepts (testkit.smtp's `Sink`):

1. `--count` notices are queued with their messages built (as a pass leaves them);
2. a drain runs in a child process over `--connections` SMTP connections; once the
   sink has taken a third of the notices (the drain at full speed), the child is
   killed with SIGKILL;
3. a second drain in this process, its clock past the lease, delivers the rest.

Duplicates are the messages the sink received beyond one per Message-ID: the outcomes
the server accepted and the killed drain had not committed yet. Nothing may be lost
(every Message-ID received). The aim: at most 10 per kill.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_common import MOMENT, database
from sqlalchemy import Engine, func, select

from testkit.net import HOST
from testkit.outbox import build_all, notices, queue
from testkit.smtp import Sink
from worker.config.policy import load_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.db.schema import NOTIFICATIONS
from worker.mail.drain import deliver_due
from worker.mail.transports.smtp import SmtpConfig, SmtpMailer
from worker.support.logs import configure_logging

AIM = 10


def drain_now(url: str, port: int, connections: int, ahead: timedelta = timedelta(0)) -> int:
    """One drain, as `start` runs it; `ahead` moves its clock (past a dead lease)."""
    engine = make_engine(url)
    config = SmtpConfig(host=HOST, port=port, pool_size=connections,
                        local_hostname="bench.local")
    try:
        counts = deliver_due(engine, load_policy(), Settings(), MOMENT,
                             clock=lambda: datetime.now(UTC) + ahead,
                             mailer=SmtpMailer(config))
    finally:
        engine.dispose()
    return counts.sent


def unsent(engine: Engine) -> int:
    query = select(func.count()).select_from(NOTIFICATIONS).where(
        NOTIFICATIONS.c.status != "sent")
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)


def one_kill(engine: Engine, url: str, sink: Sink, rows: list[dict[str, Any]],
             args: argparse.Namespace) -> dict[str, int]:
    queue(engine, rows)
    start = sink.mark()
    child = subprocess.Popen([sys.executable, __file__, "--child", url, str(sink.port),
                              str(args.connections)])
    target = len(rows) // 3
    deadline = time.monotonic() + 120
    try:
        while sink.count(start) < target:
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the drain ended before it could be killed: use more --count")
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    at_kill = sink.count(start)
    drain_now(url, sink.port, args.connections, ahead=timedelta(days=1))
    received, distinct = sink.stats(start)
    if distinct != len(rows) or unsent(engine):
        raise SystemExit(f"lost notices: {len(rows) - distinct} never reached the sink")
    return {"at_kill": at_kill, "duplicates": received - distinct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--database-url", help="an empty database (default: SQLite file)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (testkit/postgres.py)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure_logging(level="error")
    if args.child:
        url, port, connections = args.child
        drain_now(url, int(port), int(connections))
        return
    rows, _ = build_all(notices(args.count, MOMENT))
    with database("kill", postgres=args.postgres, url=args.database_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        sink = Sink()
        try:
            kills = [one_kill(engine, url, sink, rows, args) for _ in range(args.kills)]
        finally:
            sink.close()
            engine.dispose()
    report(kills, args, url)


def report(kills: list[dict[str, int]], args: argparse.Namespace, url: str) -> None:
    duplicates = [k["duplicates"] for k in kills]
    mean, most = statistics.mean(duplicates), max(duplicates)
    where = f"{args.connections} connections, {url.split(':', 1)[0]}"
    if args.json:
        print(json.dumps({"bench": "kill", "rows": [
            {"figure": f"notices sent twice per SIGKILL at full speed, mean ({where})",
             "value": round(mean, 1), "unit": "messages", "baseline": None, "ratio": None,
             "aim": f"<= {AIM}"},
            {"figure": f"notices sent twice per SIGKILL, worst of {len(kills)}",
             "value": most, "unit": "messages", "baseline": None, "ratio": None,
             "aim": f"<= {AIM}"},
        ]}))
        return
    print(f"\nkill benchmark: {len(kills)} SIGKILLs at full speed, {args.count} notices "
          f"each, {where}")
    for number, kill in enumerate(kills, start=1):
        print(f"  kill {number}: after {kill['at_kill']} messages, "
              f"{kill['duplicates']} sent twice")
    verdict = "met" if most <= AIM else "MISSED"
    print(f"  sent twice per kill: mean {mean:.1f}, worst {most} (aim <= {AIM}: {verdict}); "
          "nothing lost")


if __name__ == "__main__":
    main()
