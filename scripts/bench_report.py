"""The one JSON object every benchmark prints with `--json`, for scripts/bench_all.py.

    {"bench": NAME, "rows": [{"figure": TEXT, "value": NUMBER, "unit": TEXT,
                              "baseline": TEXT or null, "ratio": NUMBER or null,
                              "aim": TEXT or null}]}

`aim` is written as a comparison of the ratio (or, without a ratio, of the value) with a
number: "<= 1.3", ">= 20". The human report goes to standard error then, so that
standard output holds that object alone.
"""

from __future__ import annotations

import json
from typing import Any

Row = dict[str, Any]


def row(figure: str, value: float, unit: str, *, baseline: str | None = None,
        ratio: float | None = None, aim: str | None = None) -> Row:
    return {"figure": figure, "value": round(value, 4), "unit": unit, "baseline": baseline,
            "ratio": None if ratio is None else round(ratio, 4), "aim": aim}


def print_json(bench: str, rows: list[Row]) -> None:
    print(json.dumps({"bench": bench, "rows": rows}), flush=True)
