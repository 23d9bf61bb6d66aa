#!/usr/bin/env python3
"""Benchmark: how fast are events pushed to a webhook endpoint, next to plain httpx?

    python scripts/bench_webhooks.py                   # 5000 events, 8 connections, SQLite
    python scripts/bench_webhooks.py --count 2000 --concurrency 4
    python scripts/bench_webhooks.py --postgres        # a throwaway PostgreSQL server
    python scripts/bench_webhooks.py --json            # one JSON object on stdout

A minimal HTTP/1.1 receiver (testkit.http's counting receiver: asyncio, keep-alive, 204
to every POST) runs in another process (the machine's other core), counting requests and
distinct webhook-ids. In one run, against it:

1. plain: the event bodies (the very bytes the worker sends) are POSTed with one
   `httpx.AsyncClient` over `--concurrency` connections, as many requests in flight.
2. worker: `push_due` pushes the same events from the database: it enqueues them (one
   delivery row each), claims them in batches with leases, signs each request
   (Standard Webhooks), POSTs it over the same number of connections and records the
   answers. Before each run the delivery rows are removed, so each run does it all.

Figures are events per second, best of `--runs` (the two alternate, so both see the
same load), and the client's CPU time per event (every thread of this process, so the
worker's SQLite work counts; a PostgreSQL server's does not). The aim is a worker rate of
at least 0.7 of the plain rate. Every run is checked to deliver each event exactly once.
On a machine shared with other work the wall-clock rates swing by 2x between runs; the
CPU figures are steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from bench_common import MOMENT, database
from sqlalchemy import Engine, delete, insert, select, update

from testkit.http import CountingReceiver
from worker.config.policy import load_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.db.schema import EVENTS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from worker.support.logs import configure_logging
from worker.webhooks.push import push_due
from worker.webhooks.signing import event_body

AIM = 0.7
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# --- the two ways -----------------------------------------------------------------------


def write_events(engine: Engine, count: int) -> list[tuple[str, bytes]]:
    """`count` subscription events with realistic payloads; returns (id, body) each."""
    rows = [{"id": f"evt_{uuid.uuid4().hex}", "type": "subscription.status_changed",
             "subject_type": "subscription", "subject_id": f"s{n}", "reseller_id": "r1",
             "occurred_at": MOMENT, "created_at": MOMENT,
             "data": {"id": f"s{n}", "customer_id": f"c{n // 3}", "reseller_id": "r1",
                      "from": "grace", "to": "lapsed", "effective_on": "2027-03-10",
                      "reason": "grace_ended", "anniversary_date": "2027-02-24"}}
             for n in range(count)]
    with engine.begin() as connection:
        connection.execute(insert(EVENTS), rows)
    return [(r["id"], event_body(r["type"], r["occurred_at"], r["data"])) for r in rows]


async def plain(url: str, bodies: list[tuple[str, bytes]], concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue = iter(bodies)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            for event_id, body in queue:
                response = await client.post(url, content=body, headers={
                    "webhook-id": event_id, "content-type": "application/json"})
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def reset(engine: Engine) -> None:
    """Forget every delivery: the next push enqueues and pushes every event again."""
    with engine.begin() as connection:
        connection.execute(delete(WEBHOOK_DELIVERIES))
        connection.execute(update(WEBHOOK_ENDPOINTS).values(enqueued_through=0))


def timed(what: str, run: object, receiver: CountingReceiver, count: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, every thread) of one run."""
    started, cpu = time.perf_counter(), time.process_time()
    if asyncio.iscoroutine(run):
        asyncio.run(run)
    elif callable(run):
        run()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    requests, ids = receiver.take_count()
    if (requests, ids) != (count, count):
        raise SystemExit(f"{what}: the receiver got {requests} requests for {ids} events,"
                         f" expected {count} each")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (testkit/postgres.py)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    configure_logging(level="warning")
    receiver = CountingReceiver()
    try:
        with database("webhooks", postgres=args.postgres) as url:
            engine = make_engine(url)
            upgrade(engine)
            base = load_policy()
            section = base.webhooks.model_copy(update={"concurrency": args.concurrency})
            policy = base.model_copy(update={"webhooks": section})
            settings = Settings(database_url=url, webhook_url=receiver.url,
                                webhook_secret=SECRET)
            clock = lambda: datetime.now(UTC)  # noqa: E731
            push_due(engine, settings, policy, MOMENT, clock=clock)  # registers the endpoint
            bodies = write_events(engine, args.count)
            plain_s, worker_s = [], []
            for _ in range(args.runs):
                plain_s.append(timed("plain", plain(receiver.url, bodies, args.concurrency),
                                     receiver, args.count))
                reset(engine)
                worker_s.append(timed("worker", lambda: push_due(
                    engine, settings, policy, MOMENT + timedelta(seconds=1), clock=clock),
                    receiver, args.count))
            with engine.connect() as connection:
                states = set(connection.scalars(select(WEBHOOK_DELIVERIES.c.status)))
            if states != {"delivered"}:
                raise SystemExit(f"delivery states after the runs: {states}")
            engine.dispose()
            backend = url.split(":", 1)[0]
    finally:
        receiver.close()
    plain_rate = args.count / min(wall for wall, _ in plain_s)
    worker_rate = args.count / min(wall for wall, _ in worker_s)
    plain_cpu = min(cpu for _, cpu in plain_s) / args.count * 1e3
    worker_cpu = min(cpu for _, cpu in worker_s) / args.count * 1e3
    ratio = worker_rate / plain_rate
    setting = f"{args.count} events, {args.concurrency} connections, {backend}"
    if args.json:
        print(json.dumps({"bench": "webhooks", "rows": [
            {"figure": f"plain httpx POSTs ({setting})", "value": round(plain_rate),
             "unit": "events/s", "baseline": None, "ratio": None, "aim": None},
            {"figure": f"push_due: enqueue, claim, sign, POST, record ({setting})",
             "value": round(worker_rate), "unit": "events/s",
             "baseline": "plain httpx POSTs", "ratio": round(ratio, 2),
             "aim": f">= {AIM}"},
            {"figure": f"plain httpx: client CPU per event ({setting})",
             "value": round(plain_cpu, 3), "unit": "ms", "baseline": None, "ratio": None,
             "aim": None},
            {"figure": f"push_due: client CPU per event, database included ({setting})",
             "value": round(worker_cpu, 3), "unit": "ms", "baseline": "plain httpx CPU",
             "ratio": round(worker_cpu / plain_cpu, 2), "aim": None}]}))
        return
    print(f"webhook benchmark: {setting}, best of {args.runs}; Python "
          f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"  plain httpx POSTs          {plain_rate:8.0f} events/s  "
          f"(client CPU {plain_cpu:.2f} ms/event)")
    print(f"  push_due                   {worker_rate:8.0f} events/s  "
          f"(client CPU {worker_cpu:.2f} ms/event, database included)")
    print(f"  push_due / plain: {ratio:.2f} (aim >= {AIM}: {'met' if ratio >= AIM else 'MISSED'})")


if __name__ == "__main__":
    main()
