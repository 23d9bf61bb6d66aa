#!/usr/bin/env python3
"""Benchmark: one replica against three on one PostgreSQL, the same due work.

    python scripts/bench_replicas.py             # 100k subscriptions, 4,000 due, best of 2
    python scripts/bench_replicas.py --quick     # 20k subscriptions, 2,000 due, one run
    python scripts/bench_replicas.py --json      # one JSON object on stdout

A throwaway PostgreSQL server (testkit/postgres.py) holds one settled portfolio
(testkit/settled.py: a fixed number of due records, every reseller's digest due).
Each run takes a fresh copy (CREATE DATABASE … TEMPLATE) and times, from the first start
to the last exit, real `renewal-worker run --once --as-of T` processes (pass and delivery
to `.eml` files, one folder per process): one process, then three at once. The two take
turns, so a change in the machine's load weighs on both.

Correctness is checked on every run, not assumed: the three replicas created exactly
the notices the single process created (same unique keys, same delivery states), and
no Message-ID was written twice across their folders (no notice sent twice).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from bench_common import (
    PostgresBackend,
    bench_moment,
    log,
    prepare,
    print_json,
    row,
    size_label,
)
from sqlalchemy import create_engine, text

from testkit.cli import environ
from testkit.portfolios import Plan
from testkit.postgres import running_server
from worker.config.policy import load_policy
from worker.support.logs import configure_logging

AIM = 1.0  # three replicas / one: at least not slower on the same work
WORKER = [sys.executable, "-m", "worker"]


@dataclass(frozen=True)
class Run:
    seconds: float
    notices: frozenset[tuple[str, str, str, str, str]]
    emails: int


def replicas(url: str, moment: str, folder: Path, count: int) -> float:
    """Wall seconds of `count` concurrent `run --once` processes, each exiting 0."""
    envs = [environ(url, folder / f"mail-{index}") for index in range(count)]
    children = []
    started = time.perf_counter()
    for index, env in enumerate(envs):
        log_file = (folder / f"replica-{index}.log").open("w")
        children.append((subprocess.Popen([*WORKER, "run", "--once", "--as-of", moment],
                                          env=env, stdout=subprocess.DEVNULL,
                                          stderr=log_file), log_file))
    for child, log_file in children:
        code = child.wait(timeout=3600)
        log_file.close()
        if code != 0:
            raise SystemExit(f"a replica exited {code}: see {log_file.name}")
    return time.perf_counter() - started


def notices(url: str) -> frozenset[tuple[str, str, str, str, str]]:
    """Every notice the database holds: its unique key and its delivery state."""
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT kind, ref, occasion, audience, status FROM notifications"))
        found = frozenset((kind, ref, occasion, audience, status)
                          for kind, ref, occasion, audience, status in rows)
    engine.dispose()
    return found


def emails(folder: Path) -> int:
    """The `.eml` files the replicas wrote; raises if one Message-ID appears twice."""
    parser = BytesHeaderParser()
    ids = Counter(parser.parsebytes(path.read_bytes())["Message-ID"]
                  for path in folder.glob("mail-*/**/*.eml"))
    twice = [message_id for message_id, seen in ids.items() if seen > 1]
    if twice:
        raise SystemExit(f"{len(twice)} notices sent twice, e.g. {twice[0]}")
    return sum(ids.values())


def one_run(backend: PostgresBackend, plan: Plan, count: int, workdir: Path) -> Run:
    name = f"{plan.name()}_r{count}"
    url = backend.copy(plan.name(), name)
    folder = workdir / f"replicas-{count}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    seconds = replicas(url, plan.moment.isoformat(), folder, count)
    run = Run(seconds, notices(url), emails(folder))
    backend.drop(name)
    log(f"  {count} replica(s): {seconds:.2f} s, {len(run.notices)} notices, "
        f"{run.emails} emails")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20k, 2,000 due, one run")
    parser.add_argument("--moment", default="2027-03-10T14:00Z")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.size, args.due, args.runs = 20_000, 2000, 1
    configure_logging(json=True, level="warning")
    plan = Plan(args.size, args.due, bench_moment(args.moment))
    single: list[Run] = []
    three: list[Run] = []
    with running_server() as server, tempfile.TemporaryDirectory(
            prefix="bench-replicas-") as folder:
        backend = PostgresBackend(server)
        prepare(backend, plan, load_policy())
        for _ in range(args.runs):
            single.append(one_run(backend, plan, 1, Path(folder)))
            three.append(one_run(backend, plan, 3, Path(folder)))
        backend.admin.dispose()
    for run in three:
        if run.notices != single[0].notices or run.emails != single[0].emails:
            raise SystemExit("three replicas did not do what one did: "
                             f"{len(run.notices ^ single[0].notices)} notices differ, "
                             f"{run.emails} emails against {single[0].emails}")
    one, many = min(run.seconds for run in single), min(run.seconds for run in three)
    label = f"{size_label(args.size)} subscriptions, {args.due:,} due"
    lines = [f"one replica: {one:.2f} s; three replicas: {many:.2f} s ({label}, "
             f"{single[0].emails} emails, {len(single[0].notices)} notices, none twice)",
             f"three / one = {many / one:.2f} (aim <= {AIM}: "
             f"{'met' if many / one <= AIM else 'NOT met'})"]
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json("replicas", [
            row(f"three replicas, {label} (PostgreSQL)", many, "s",
                baseline=f"one replica: {one:.2f} s", ratio=many / one, aim=f"<= {AIM}"),
            row("notices sent twice by three replicas", 0, "notices",
                baseline=f"{single[0].emails} sent", aim="== 0"),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
