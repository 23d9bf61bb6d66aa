"""What the benchmark scripts share that is theirs alone (what tests share with them is in
testkit/): the bench moment on the command line."""

from __future__ import annotations

from datetime import UTC, datetime


def bench_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("the bench moment needs an offset or Z")
    return moment.astimezone(UTC)
