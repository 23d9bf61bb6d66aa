#!/usr/bin/env python3
"""Benchmark: does a daily pass's memory follow what is due, not what is stored?

    python scripts/bench_memory.py                 # SQLite, 100k and 1M subscriptions
    python scripts/bench_memory.py --quick         # 10k and 100k
    python scripts/bench_memory.py --workdir var/bench/portfolios   # keep and reuse them

The same settled portfolios as scripts/bench_pass.py (testkit/settled.py: the same
due records whatever the size, every reseller's digest due). Peak RSS only grows in a
process, so each measure is a new process: one that imports the worker, opens the
database and stops (the idle process), and one per size that also runs the daily pass
(`run_pass` at the bench moment, on a fresh copy, as bench_pass does). Its peak RSS is
the kernel's own figure (VmHWM). Ratios: the largest pass against the smallest
(aim: at most 1.5, memory does not follow the portfolio) and against the idle process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench_common import SqliteBackend, bench_moment, prepare, print_json, row, size_label

from testkit.portfolios import Plan

SCALING_AIM = 1.5  # peak RSS of the largest pass / of the smallest


def child(url: str, moment: str, idle: bool) -> None:
    """In the measured process: open the database, run the pass unless idle, report."""
    from worker.config.policy import load_policy  # noqa: PLC0415
    from worker.db.engine import make_engine  # noqa: PLC0415 - the measure starts here
    from worker.passes.run import run_pass  # noqa: PLC0415
    from worker.support.logs import configure_logging  # noqa: PLC0415

    configure_logging(json=True, level="warning")
    engine = make_engine(url)
    with engine.connect():
        pass
    evaluated: dict[str, int] = {}
    if not idle:
        summary = run_pass(engine, load_policy(), bench_moment(moment))
        evaluated = dict(summary.evaluated)
    engine.dispose()
    print(json.dumps({"peak_mb": peak_rss_mb(), "evaluated": evaluated}))


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM). Not `ru_maxrss`: Linux carries
    that across exec, so a child would report its parent's peak at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: Linux is needed")


def measured(url: str, plan: Plan, *, idle: bool) -> float:
    command = [sys.executable, __file__, "--child", url, "--moment", plan.moment.isoformat()]
    done = subprocess.run([*command, *(["--idle"] if idle else [])], capture_output=True,
                          text=True, check=True, timeout=3600)
    result = json.loads(done.stdout)
    expected = {"subscription": plan.due_subscriptions, "customer": plan.due_customers}
    found = {kind: result["evaluated"].get(kind, 0) for kind in expected}
    if not idle and found != expected:
        raise SystemExit(f"the pass evaluated {result['evaluated']}, expected {expected}")
    return float(result["peak_mb"])


@contextlib.contextmanager
def workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
    else:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
            yield Path(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--quick", action="store_true", help="sizes 10000 100000")
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--resellers", type=int, default=50)
    parser.add_argument("--moment", default="2027-03-10T14:00Z")
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the prepared files")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.moment, args.idle)
        return 0
    from worker.config.policy import load_policy  # noqa: PLC0415
    from worker.support.logs import configure_logging  # noqa: PLC0415

    configure_logging(json=True, level="warning")
    sizes = sorted([10_000, 100_000] if args.quick else args.sizes)
    plans = [Plan(size, args.due, bench_moment(args.moment), args.resellers) for size in sizes]
    peaks: list[float] = []
    with workdir(args.workdir) as folder:
        backend = SqliteBackend(folder)
        for plan in plans:
            prepare(backend, plan, load_policy())
        idle = measured(backend.url(plans[0].name()), plans[0], idle=True)
        for plan in plans:
            url = backend.copy(plan.name(), f"{plan.name()}_memory")
            peaks.append(measured(url, plan, idle=False))
            backend.drop(f"{plan.name()}_memory")
    small, large = size_label(sizes[0]), size_label(sizes[1])
    lines = [f"idle process (worker imported, database open): {idle:.0f} MB",
             f"pass over {small}: peak {peaks[0]:.0f} MB",
             f"pass over {large}: peak {peaks[1]:.0f} MB",
             f"{large} / {small} = {peaks[1] / peaks[0]:.2f} (aim <= {SCALING_AIM}: "
             f"{'met' if peaks[1] / peaks[0] <= SCALING_AIM else 'NOT met'})",
             f"{large} / idle = {peaks[1] / idle:.2f}"]
    print("\n".join(lines), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json("memory", [
            row("peak RSS, idle process", idle, "MB"),
            row(f"peak RSS, pass over {large}", peaks[1], "MB",
                baseline=f"pass over {small}: {peaks[0]:.0f} MB",
                ratio=peaks[1] / peaks[0], aim=f"<= {SCALING_AIM}"),
            row(f"peak RSS, pass over {large}", peaks[1], "MB",
                baseline=f"idle process: {idle:.0f} MB", ratio=peaks[1] / idle),
        ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
