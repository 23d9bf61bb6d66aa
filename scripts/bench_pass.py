#!/usr/bin/env python3
"""Benchmark: does one pass cost what is due, not what is stored?

    python scripts/bench_pass.py                          # SQLite, 100k and 1M subscriptions
    python scripts/bench_pass.py --quick                  # SQLite, 10k and 100k
    python scripts/bench_pass.py --postgres               # a throwaway PostgreSQL server
    python scripts/bench_pass.py --database-url postgresql+psycopg://user@host/postgres
    python scripts/bench_pass.py --json                   # one JSON object on stdout

In one run it builds one settled portfolio per size (testkit/settled.py) with the
same number of due records in each (`--due`), times `run_pass` at the bench moment on a
fresh copy of each (best of `--runs`; the sizes take turns, so a change in the machine's
load weighs on all of them), and times the naive alternative on the largest: an ORM loop
that loads every subscription and evaluates it, writing nothing. Figures are printed as
ratios against that baseline, measured in the same run on the same machine; the absolute
seconds are there to read, not to compare across machines.

The bench moment is a daily pass: every reseller's digest is due at it. `run_pass` is
called without `deliver`: rules and their writes only, no message building or sending.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import os
import platform
import pstats
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy
from bench_common import (
    Backend,
    PostgresBackend,
    Row,
    SqliteBackend,
    bench_moment,
    log,
    prepare,
    print_json,
    row,
    size_label,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from testkit.portfolios import Plan
from testkit.postgres import running_server
from worker.config.policy import Policy, load_policy
from worker.db.engine import make_engine
from worker.db.schema import Customer, Subscription
from worker.passes.run import run_pass
from worker.passes.snapshots import subscription_state
from worker.passes.summary import PassSummary
from worker.rules.subscriptions import evaluate_subscription
from worker.support.logs import configure_logging

SCALING_AIM = 1.3  # largest pass / smallest pass, same due records
NAIVE_AIM = 20.0  # naive loop / largest pass


# --- where the databases live ----------------------------------------------------------


@contextlib.contextmanager
def open_backend(args: argparse.Namespace) -> Iterator[Backend]:
    if args.postgres:
        with running_server() as url:
            yield PostgresBackend(url)
    elif args.database_url:
        yield PostgresBackend(args.database_url)
    elif args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield SqliteBackend(args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-pass-", dir=args.tmp) as workdir:
            yield SqliteBackend(Path(workdir))


# --- measuring -------------------------------------------------------------------------


@dataclass(frozen=True)
class PassTiming:
    seconds: float
    cpu_seconds: float
    stages: dict[str, float]
    summary: PassSummary


@dataclass(frozen=True)
class SizeResult:
    plan: Plan
    build_seconds: float | None
    best: PassTiming
    all_seconds: list[float]


def timed_pass(url: str, policy: Policy, plan: Plan) -> PassTiming:
    """`run_pass` at the bench moment; stage ends are read from its progress callback."""
    engine = make_engine(url)
    marks: dict[str, float] = {}

    def progress(stage: str, _done: int, _total: int) -> None:
        marks[stage] = time.perf_counter()

    started, cpu_started = time.perf_counter(), time.process_time()
    summary = run_pass(engine, policy, plan.moment, progress=progress)
    finished, cpu = time.perf_counter(), time.process_time() - cpu_started
    engine.dispose()
    subscriptions_end = marks.get("subscriptions", started)
    customers_end = marks.get("customers", subscriptions_end)
    stages = {"subscriptions": subscriptions_end - started,
              "customers": customers_end - subscriptions_end,
              "codes+digests": finished - customers_end}
    return PassTiming(finished - started, cpu, stages, summary)


def check(summary: PassSummary, plan: Plan) -> None:
    """The pass evaluated exactly the planned due records, and nothing failed."""
    expected = {"subscription": plan.due_subscriptions, "customer": plan.due_customers}
    found = {kind: summary.evaluated.get(kind, 0) for kind in expected}
    if found != expected or summary.errors:
        raise SystemExit(f"the pass did not evaluate what was planned: expected {expected}, "
                         f"evaluated {dict(summary.evaluated)}, errors {summary.errors[:3]}")


def one_run(backend: Backend, plan: Plan, policy: Policy) -> PassTiming:
    copy = f"{plan.name()}_run"
    gc.collect()
    timing = timed_pass(backend.copy(plan.name(), copy), policy, plan)
    backend.drop(copy)
    check(timing.summary, plan)
    return timing


def measure(backend: Backend, plans: list[Plan], policy: Policy, runs: int) -> list[SizeResult]:
    """Every size prepared, then timed in turns (run 1 of each size, run 2, ...) so that a
    change in the machine's load during the bench weighs on every size alike."""
    built = {plan: prepare(backend, plan, policy) for plan in plans}
    timings: dict[Plan, list[PassTiming]] = {plan: [] for plan in plans}
    for run in range(runs):
        for plan in plans:
            timings[plan].append(one_run(backend, plan, policy))
            log(f"  {plan.subscriptions:,}: run {run + 1}/{runs}: "
                f"{timings[plan][-1].seconds:.3f} s")
    return [SizeResult(plan, built[plan], min(timings[plan], key=lambda t: t.seconds),
                       [timing.seconds for timing in timings[plan]]) for plan in plans]


def naive_loop(url: str, policy: Policy, plan: Plan) -> tuple[float, int]:
    """Every subscription through the ORM, into the rule; nothing written."""
    engine = make_engine(url)
    customers = Customer.__table__
    started = time.perf_counter()
    with engine.connect() as connection:
        zones = {cid: ZoneInfo(name) for cid, name in
                 connection.execute(select(customers.c.id, customers.c.timezone))}
    evaluated = 0
    with Session(engine) as session:
        for subscription in session.scalars(select(Subscription)):
            today = plan.moment.astimezone(zones[subscription.customer_id]).date()
            evaluate_subscription(subscription_state(subscription), today, policy)  # type: ignore[arg-type]
            evaluated += 1
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, evaluated


def best_naive(backend: Backend, plan: Plan, policy: Policy, runs: int) -> tuple[float, int]:
    results = []
    for run in range(runs):
        results.append(naive_loop(backend.url(plan.name()), policy, plan))
        log(f"  naive loop on {plan.subscriptions:,}: run {run + 1}/{runs}: "
            f"{results[-1][0]:.1f} s")
    return min(results)


def profile_pass(backend: Backend, plan: Plan, policy: Policy, lines: int) -> str:
    """cProfile of one more pass on a fresh copy: the top functions by own time."""
    copy = f"{plan.name()}_profile"
    url = backend.copy(plan.name(), copy)
    profiler = cProfile.Profile()
    profiler.runcall(timed_pass, url, policy, plan)
    backend.drop(copy)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


# --- the report ------------------------------------------------------------------------


def machine_facts(backend: Backend) -> dict[str, str]:
    load = " ".join(f"{figure:.1f}" for figure in os.getloadavg())
    facts = {"python": f"{platform.python_implementation()} {platform.python_version()}",
             "sqlalchemy": sqlalchemy.__version__, "cores": str(os.cpu_count()),
             "cpu": cpu_model(), "load average at the end": load,
             "platform": platform.platform()}
    return {**facts, **backend.facts()}


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def queued_line(summary: PassSummary) -> str:
    queued = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.queued.items()))
    return f"queued: {queued}; transitions {len(summary.transitions)}"


def report(
    results: list[SizeResult], naive: tuple[float, int] | None, args: argparse.Namespace,
    facts: dict[str, str], emit: Callable[[str], None] = print,
) -> None:
    first = results[0].plan
    emit(f"\nbench_pass: backend {args.backend}, moment {first.moment.isoformat()}, "
         f"{first.resellers} resellers, pass best of {args.runs} (each on a fresh copy)")
    emit(f"due records in every size: {first.due_subscriptions} subscriptions (AD-45, AD-30 "
         f"and AD on the bench day), {first.due_customers} customers (payment day 31); "
         f"every reseller's digest is due")
    emit(f"{'subscriptions':>13} {'customers':>10} {'due':>6} {'digests':>7} {'pass s':>8} "
         f"{'records/s':>10} {'cpu s':>6} {'subs s':>7} {'cust s':>7} {'codes+digests s':>15} "
         f"{'all runs s':>22}")
    for result in results:
        emit(size_row(result))
    for result in results:
        built = ("reused" if result.build_seconds is None
                 else f"built in {result.build_seconds:.0f} s")
        emit(f"  {size_label(result.plan.subscriptions)} ({built}) "
             f"{queued_line(result.best.summary)}")
    emit_ratios(results, naive, emit)
    emit("\nmachine: " + "; ".join(f"{key} {value}" for key, value in facts.items()))
    emit("command: " + shlex.join([sys.executable, *sys.argv]))


def size_row(result: SizeResult) -> str:
    plan, best = result.plan, result.best
    digests = best.summary.evaluated.get("reseller", 0)
    records = plan.due_subscriptions + plan.due_customers
    runs = " ".join(f"{seconds:.3f}" for seconds in result.all_seconds)
    stages = best.stages
    return (f"{plan.subscriptions:>13,} {plan.customers:>10,} {records:>6,} {digests:>7} "
            f"{best.seconds:>8.3f} {records / best.seconds:>10,.0f} {best.cpu_seconds:>6.2f} "
            f"{stages['subscriptions']:>7.3f} {stages['customers']:>7.3f} "
            f"{stages['codes+digests']:>15.3f} {runs:>22}")


def emit_ratios(
    results: list[SizeResult], naive: tuple[float, int] | None, emit: Callable[[str], None]
) -> None:
    small, large = results[0], results[-1]
    small_label, large_label = size_label(small.plan.subscriptions), size_label(
        large.plan.subscriptions)
    scaling = large.best.seconds / small.best.seconds
    emit(f"\n{large_label} pass / {small_label} pass = {scaling:.2f}   "
         f"(aim <= {SCALING_AIM}: {'met' if scaling <= SCALING_AIM else 'NOT met'})")
    if naive is None:
        emit("naive loop: not measured (--no-naive)")
        return
    seconds, evaluated = naive
    ratio = seconds / large.best.seconds
    emit(f"naive loop / {large_label} pass = {ratio:.1f}   "
         f"(aim >= {NAIVE_AIM:.0f}: {'met' if ratio >= NAIVE_AIM else 'NOT met'})")
    emit(f"  naive loop: every subscription through the ORM into evaluate_subscription, no "
         f"writes: {seconds:.2f} s for {evaluated:,}, {evaluated / seconds:,.0f}/s")


# --- command line ----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="subscriptions per database (default: 100000 1000000)")
    parser.add_argument("--quick", action="store_true", help="sizes 10000 100000")
    parser.add_argument("--due", type=int, default=2000,
                        help="due records in every size: 90%% subscriptions, 10%% customers")
    parser.add_argument("--resellers", type=int, default=50)
    parser.add_argument("--moment", type=bench_moment, default=bench_moment("2027-03-10T14:00Z"),
                        help="the bench pass's moment (default 2027-03-10T14:00Z)")
    parser.add_argument("--runs", type=int, default=3, help="pass runs per size (best kept)")
    parser.add_argument("--naive-runs", type=int, default=1, help="naive loop runs (best kept)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--database-url", help="a PostgreSQL server URL (its databases are "
                        "created and dropped by the bench)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL server (testkit/postgres.py)")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the prepared SQLite "
                        "files here; default: a temporary directory removed at the end")
    parser.add_argument("--tmp", help="parent of the temporary directory")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object of figures on stdout (report on stderr)")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of one pass on the largest size")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [10_000, 100_000]
    args.sizes = sorted(args.sizes)
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+psycopg:// URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(json=True, level="warning")
    policy = load_policy()
    with open_backend(args) as backend:
        args.backend = backend.name
        plans = [Plan(size, args.due, args.moment, args.resellers) for size in args.sizes]
        results = measure(backend, plans, policy, args.runs)
        naive = None if args.no_naive else best_naive(backend, plans[-1], policy,
                                                      args.naive_runs)
        facts = machine_facts(backend)
        profile = profile_pass(backend, plans[-1], policy, 25) if args.profile else None
    if args.json:
        report(results, naive, args, facts, emit=log)
        print_json("pass", json_rows(results, naive, args.backend))
    else:
        report(results, naive, args, facts)
    if profile:
        log("\n" + profile)
    return 0


def json_rows(results: list[SizeResult], naive: tuple[float, int] | None,
              backend: str) -> list[Row]:
    """The same figures as `emit_ratios`, for scripts/bench_all.py."""
    small, large = results[0], results[-1]
    small_label = size_label(small.plan.subscriptions)
    large_label = size_label(large.plan.subscriptions)
    rows = [
        row(f"{backend}: pass over {small_label}", small.best.seconds, "s"),
        row(f"{backend}: pass over {large_label}", large.best.seconds, "s",
            baseline=f"pass over {small_label}: {small.best.seconds:.3f} s",
            ratio=large.best.seconds / small.best.seconds, aim=f"<= {SCALING_AIM}"),
    ]
    if naive is not None:
        rows.append(row(f"{backend}: naive ORM loop over {large_label}", naive[0], "s",
                        baseline=f"pass over {large_label}: {large.best.seconds:.3f} s",
                        ratio=naive[0] / large.best.seconds, aim=f">= {NAIVE_AIM:g}"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
