#!/usr/bin/env python3
"""Every benchmark of the project in one run, and one table of their ratios.

    python scripts/bench_all.py            # every scripts/bench_*.py, full sizes
    python scripts/bench_all.py --quick    # each with --quick: smaller sizes, a few minutes
    python scripts/bench_all.py --only pass memory

Each benchmark script (scripts/bench_*.py but this one and the helper modules) runs in
its own process with `--json` (and `--quick` when asked and understood), its report
passing through on standard error, and prints one JSON object (scripts/bench_common.py).
The figures become one Markdown table (bench, figure, value, baseline, ratio, aim, met?)
printed on standard output and written to var/bench/latest.md with the command, the
machine and each script's duration. bench_pass and bench_memory share their prepared
portfolios in var/bench/portfolios (kept: a second run skips building them). A script
that fails or prints something else gets one row saying so; the run goes on and exits 1
at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
OUTPUT = ROOT / "var" / "bench" / "latest.md"
HELPERS = {"bench_all", "bench_common"}  # modules, not benchmarks
FIRST = ("pass", "memory", "delivery", "kill", "webhooks", "replicas")  # table order
TIMEOUT_SECONDS = 4 * 3600
# The settled portfolios that bench_pass and bench_memory both build (up to 1M
# subscriptions, minutes each) are kept here and reused, run after run.
PORTFOLIOS = ROOT / "var" / "bench" / "portfolios"
SHARING_PORTFOLIOS = {"pass", "memory"}
_AIM = re.compile(r"\s*(<=|>=|<|>|==?)\s*(-?[0-9.]+)")


@dataclass(frozen=True)
class Outcome:
    name: str
    seconds: float
    rows: list[dict[str, Any]]
    failure: str | None = None


def discover() -> list[Path]:
    """The benchmark scripts present, in the table's order (known ones first)."""
    found = {path.stem.removeprefix("bench_"): path for path in SCRIPTS.glob("bench_*.py")
             if path.stem not in HELPERS}
    known = [name for name in FIRST if name in found]
    return [found[name] for name in known + sorted(set(found) - set(known))]


def command_for(script: Path, quick: bool) -> list[str]:
    """`--quick` only for a script that has it (a newer script may not)."""
    extra = ["--quick"] if quick and "--quick" in script.read_text(encoding="utf-8") else []
    if script.stem.removeprefix("bench_") in SHARING_PORTFOLIOS:
        extra += ["--workdir", str(PORTFOLIOS)]
    return [sys.executable, str(script), "--json", *extra]


def run_one(script: Path, quick: bool) -> Outcome:
    name = script.stem.removeprefix("bench_")
    command = command_for(script, quick)
    print(f"\n== {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return Outcome(name, time.perf_counter() - started, [],
                       f"no answer after {TIMEOUT_SECONDS} s")
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return Outcome(name, seconds, [], f"exit status {done.returncode}")
    try:
        document = json.loads(done.stdout)
        rows = list(document["rows"])
    except (ValueError, KeyError, TypeError):
        return Outcome(name, seconds, [], "its --json output is not one JSON object with rows")
    return Outcome(str(document.get("bench", name)), seconds, rows)


def met(aim: str | None, value: float | None, ratio: float | None) -> str:
    """Whether the ratio (or the value, without a ratio) meets an aim such as "<= 1.3"."""
    figure = ratio if ratio is not None else value
    match = _AIM.fullmatch(aim or "")
    if match is None or figure is None:
        return ""
    operator, bound = match.group(1), float(match.group(2))
    verdicts = {"<=": figure <= bound, ">=": figure >= bound, "<": figure < bound,
                ">": figure > bound, "==": figure == bound, "=": figure == bound}
    return "yes" if verdicts[operator] else "**no**"


def number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| bench | figure | value | baseline | ratio | aim | met? |",
             "|---|---|---|---|---|---|---|"]
    for outcome in outcomes:
        if outcome.failure is not None:
            lines.append(f"| {outcome.name} | **failed**: {outcome.failure} | | | | | **no** |")
        for item in outcome.rows:
            value = f"{number(item.get('value'))} {item.get('unit') or ''}".strip()
            lines.append(" | ".join([
                f"| {outcome.name}", str(item.get("figure", "")), value,
                str(item.get("baseline") or ""), number(item.get("ratio")),
                str(item.get("aim") or ""),
                met(item.get("aim"), item.get("value"), item.get("ratio")) + " |"]))
    return lines


def document(outcomes: list[Outcome], argv: list[str], total: float) -> str:
    load = " ".join(f"{figure:.1f}" for figure in os.getloadavg())
    durations = ", ".join(f"{outcome.name} {outcome.seconds:.0f} s" for outcome in outcomes)
    return "\n".join([
        f"# Benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{shlex.join(['python', 'scripts/bench_all.py', *argv])}`, "
        f"{total / 60:.1f} min in all ({durations}).",
        f"Machine: Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average at the end {load}, {platform.platform()}.",
        "",
        *table(outcomes),
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to each script")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="only these benchmarks (pass, memory, delivery, replicas, …)")
    args = parser.parse_args(argv)
    scripts = discover()
    if args.only:
        scripts = [script for script in scripts
                   if script.stem.removeprefix("bench_") in args.only]
    started = time.perf_counter()
    outcomes = [run_one(script, args.quick) for script in scripts]
    text = document(outcomes, sys.argv[1:] if argv is None else argv,
                    time.perf_counter() - started)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    return 1 if any(outcome.failure for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
