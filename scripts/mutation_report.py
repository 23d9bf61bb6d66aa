"""The mutation score per module, from the results `mutmut run` left in mutants/.

`make mutate` runs it after mutmut. It reads mutmut's own result files
(mutants/**/*.py.meta: the exit code of the tests for each mutant) and prints one row
per module: mutants checked, killed (a test failed or timed out), survived (every test
passed), no tests (no selected test runs the mutated function) and the score
killed / checked. Mutants that were not run (outside the patterns given to mutmut) are
left out. `--json` prints the same rows as one JSON object; `--survivors` lists the
names of the survivors, for `mutmut show NAME`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, -24, 24, 37}  # failed, pytest internal error, timeouts, type check
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_of(key: str) -> str:
    """`worker.mail.decisions.x_settle__mutmut_3` -> `worker.mail.decisions`."""
    return key.rsplit(".", 1)[0]


def collect(root: Path) -> tuple[dict[str, Counter[str]], list[str]]:
    rows: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    for meta in sorted(root.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for key, code in exit_codes.items():
            if code is None:
                continue
            counts = rows.setdefault(module_of(key), Counter())
            counts["checked"] += 1
            if code in KILLED:
                counts["killed"] += 1
            elif code in SURVIVED:
                counts["survived"] += 1
                survivors.append(key)
            elif code in NO_TESTS:
                counts["no_tests"] += 1
            else:
                counts["other"] += 1
    return rows, survivors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--survivors", action="store_true")
    parser.add_argument("--root", type=Path, default=Path("mutants"))
    options = parser.parse_args()
    if not options.root.is_dir():
        print(f"{options.root}/ not found: run `make mutate` first", file=sys.stderr)
        return 1
    rows, survivors = collect(options.root)
    table = [{"module": module, "mutants": c["checked"], "killed": c["killed"],
              "survived": c["survived"], "no_tests": c["no_tests"],
              "score": round(c["killed"] / c["checked"], 3) if c["checked"] else None}
             for module, c in sorted(rows.items())]
    if options.json:
        print(json.dumps({"mutation": table, "survivors": survivors}))
        return 0
    print("| module | mutants | killed | survived | no tests | score |")
    print("|---|---|---|---|---|---|")
    for row in table:
        score = "" if row["score"] is None else f"{100 * row['score']:.1f} %"
        print(f"| `{row['module']}` | {row['mutants']} | {row['killed']} | "
              f"{row['survived']} | {row['no_tests']} | {score} |")
    if options.survivors:
        print()
        print("\n".join(survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
