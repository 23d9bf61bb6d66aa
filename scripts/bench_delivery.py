#!/usr/bin/env python3
"""Benchmark: how fast does the outbox deliver, next to plain aiosmtplib?

    python scripts/bench_delivery.py                       # 10k notices, 4 connections, SQLite
    python scripts/bench_delivery.py --count 2000 --connections 2
    python scripts/bench_delivery.py --postgres            # a throwaway PostgreSQL server
    python scripts/bench_delivery.py --database-url postgresql+psycopg://user@host/db
    python scripts/bench_delivery.py --build-at-claim      # also time building while sending
    python scripts/bench_delivery.py --sign rsa            # DKIM: outbox signs, plain pre-signed

A local aiosmtpd sink runs in a separate process (this machine's second core), counting
what it accepts (testkit.smtp's `Sink`). In one run, against that sink:

1. `--count` notifications are queued as a pass stores them (the payloads of
   `worker.mail.samples`, several kinds, French and English: testkit.outbox), and their
   messages are built once, as they would be when queued (`worker.mail.compose.build_for`);
   the build rate is reported on its own.
2. plain: the same messages (same envelopes, same bytes, Date included) are sent with
   aiosmtplib's `sendmail` over `--connections` connections, each sending its share
   one after the other.
3. outbox: `deliver_due` drains the queued notifications over a pool of the same number
   of connections: claims, send-window decisions, Date stamping, sending, recording
   each outcome in the database.
4. with `--build-at-claim`: as 3, on notifications queued without their bytes, so the
   drain builds each message itself.

With `--sign rsa|ed25519` every message is DKIM-signed (a key for the samples' domain,
scripts/bench_signing.py): the outbox signs at hand-over, plain aiosmtplib sends the same
messages signed beforehand, and the CPU one signature costs is reported too.

Each figure is messages per second, best of `--runs`; the aim is an outbox rate of at
least 0.7 of the plain rate, measured in the same run. `--json` prints one JSON object
(`{"bench": "delivery", "rows": [...]}`) on stdout and nothing else. Every message is
checked to have reached the sink exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from bench_common import MOMENT, database
from bench_signing import cpu_per_message, seal_all, signing_policy
from sqlalchemy import Engine, select

from testkit.net import HOST
from testkit.outbox import NOTIFICATIONS, build_all, notices, queue
from testkit.smtp import Sink
from worker.config.policy import Policy, load_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine, upgrade
from worker.db.schema import MESSAGES
from worker.mail.compose import stamp_date
from worker.mail.dkim import Signer
from worker.mail.drain import deliver_due
from worker.mail.transports.smtp import SmtpConfig, SmtpMailer
from worker.support.logs import configure_logging

AIM = 0.7


# --- the notices ----------------------------------------------------------------------


def envelopes(engine: Engine) -> list[tuple[str, list[str], bytes]]:
    """The queued messages as the outbox would hand them over (Date stamped)."""
    now = datetime.now(UTC)
    query = (select(NOTIFICATIONS.c.payload, NOTIFICATIONS.c.recipients,
                    MESSAGES.c.message_bytes)
             .join(MESSAGES, MESSAGES.c.notification_id == NOTIFICATIONS.c.id)
             .where(NOTIFICATIONS.c.status == "queued"))
    with engine.connect() as connection:
        return [(row.payload["reseller"]["email"], list(row.recipients),
                 stamp_date(row.message_bytes, now)) for row in connection.execute(query)]


# --- the two senders ------------------------------------------------------------------


async def plain_send(port: int, messages: list[tuple[str, list[str], bytes]],
                     connections: int) -> None:
    async def one(share: list[tuple[str, list[str], bytes]]) -> None:
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, local_hostname="bench.local",
                               start_tls=False)
        await smtp.connect()
        for sender, recipients, data in share:
            await smtp.sendmail(sender, recipients, data)
        await smtp.quit()

    await asyncio.gather(*(one(messages[i::connections]) for i in range(connections)))


def outbox_send(engine: Engine, port: int, connections: int, policy: Policy) -> int:
    config = SmtpConfig(host=HOST, port=port, pool_size=connections,
                        local_hostname="bench.local")
    counts = deliver_due(engine, policy, Settings(), MOMENT,
                         clock=lambda: datetime.now(UTC), mailer=SmtpMailer(config))
    if counts.errors or counts.as_dict().keys() - {"sent"}:
        raise SystemExit(f"the outbox did not send everything: {counts}")
    return counts.sent


@dataclass
class Timing:
    name: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def timed(name: str, count: int, action: Any) -> Timing:
    started = time.perf_counter()
    action()
    return Timing(name, count, time.perf_counter() - started)


# --- the run --------------------------------------------------------------------------


@dataclass
class Bench:
    engine: Engine
    sink: Sink
    rows: list[dict[str, Any]]
    built: list[dict[str, Any]]
    connections: int
    policy: Policy

    def checked(self, timing: Timing, before: int) -> Timing:
        delivered = self.sink.count() - before
        if delivered != timing.messages:
            raise SystemExit(f"{timing.name}: the sink got {delivered}, not {timing.messages}")
        return timing

    def plain(self) -> Timing:
        queue(self.engine, self.built)
        messages = envelopes(self.engine)
        if self.policy.dkim:
            messages = seal_all(Signer.from_policy(self.policy), messages)
        before = self.sink.count()
        timing = timed("plain aiosmtplib", len(messages), lambda: asyncio.run(
            plain_send(self.sink.port, messages, self.connections)))
        return self.checked(timing, before)

    def outbox(self, *, built: bool) -> Timing:
        queue(self.engine, self.built if built else self.rows)
        before = self.sink.count()
        name = "outbox (bytes built when queued)" if built else "outbox (built while sending)"
        timing = timed(name, len(self.rows), lambda: outbox_send(
            self.engine, self.sink.port, self.connections, self.policy))
        return self.checked(timing, before)


def best(timings: list[Timing]) -> Timing:
    return min(timings, key=lambda t: t.seconds)


def figures(plain: Timing, outbox: Timing, build_rate: float, extra: Timing | None,
            args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of `--json` (scripts/bench_all.py's format)."""
    where = f"{args.count} notices, {args.connections} connections"
    if args.sign:
        where += f", DKIM {args.sign}"
    rows: list[dict[str, Any]] = [
        {"figure": f"plain aiosmtplib, pre-built bytes ({where})", "value": round(plain.rate),
         "unit": "msg/s", "baseline": None, "ratio": None, "aim": None},
        {"figure": f"outbox delivery ({where})", "value": round(outbox.rate), "unit": "msg/s",
         "baseline": "plain aiosmtplib", "ratio": round(outbox.rate / plain.rate, 2),
         "aim": f">= {AIM}"},
        {"figure": "building messages (render + MIME)", "value": round(build_rate),
         "unit": "msg/s", "baseline": None, "ratio": None, "aim": None},
    ]
    if args.sign:
        rows.append({"figure": f"DKIM signing CPU per message ({args.sign})",
                     "value": round(cpu_per_message(args.sign)), "unit": "µs",
                     "baseline": None, "ratio": None, "aim": None})
    if extra is not None:
        rows.append({"figure": f"outbox building while sending ({where})",
                     "value": round(extra.rate), "unit": "msg/s",
                     "baseline": "plain aiosmtplib", "ratio": round(extra.rate / plain.rate, 2),
                     "aim": None})
    return rows


def report(plain: Timing, outbox: Timing, build_rate: float, extra: Timing | None,
           args: argparse.Namespace, url: str) -> None:
    if args.json:
        print(json.dumps({"bench": "delivery",
                          "rows": figures(plain, outbox, build_rate, extra, args)}))
        return
    print(f"\ndelivery benchmark: {args.count} notices, {args.connections} connections, "
          f"best of {args.runs}; {url.split(':', 1)[0]}; Python "
          f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"  building messages (once, at queue time): {build_rate:8.0f} msg/s")
    for timing in (plain, outbox, extra):
        if timing is not None:
            print(f"  {timing.name:<36} {timing.rate:8.0f} msg/s  ({timing.seconds:.2f} s)")
    if args.sign:
        print(f"  DKIM signing ({args.sign}): {cpu_per_message(args.sign):8.0f} µs CPU/msg")
    ratio = outbox.rate / plain.rate
    verdict = "met" if ratio >= AIM else "MISSED"
    print(f"  outbox / plain: {ratio:.2f} (aim >= {AIM}: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--database-url", help="an empty database (default: SQLite file)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (testkit/postgres.py)")
    parser.add_argument("--build-at-claim", action="store_true")
    parser.add_argument("--sign", choices=["rsa", "ed25519"],
                        help="DKIM-sign every message with a new key of this type")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    configure_logging(level="warning")
    rows = notices(args.count, MOMENT)
    built, build_rate = build_all(rows)
    with database("delivery", postgres=args.postgres, url=args.database_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        sink = Sink()
        keys = tempfile.TemporaryDirectory(prefix="bench-dkim-")
        policy = signing_policy(args.sign, Path(keys.name)) if args.sign else load_policy()
        try:
            bench = Bench(engine, sink, rows, built, args.connections, policy)
            plain, outbox = [], []
            for _ in range(args.runs):
                plain.append(bench.plain())
                outbox.append(bench.outbox(built=True))
            extra = bench.outbox(built=False) if args.build_at_claim else None
            report(best(plain), best(outbox), build_rate, extra, args, url)
        finally:
            sink.close()
            engine.dispose()
            keys.cleanup()


if __name__ == "__main__":
    main()
