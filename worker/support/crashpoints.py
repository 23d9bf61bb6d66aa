"""Named crash points, for the crash tests only: a process that reaches the armed point
kills itself with SIGKILL, as an OOM kill or a dying host would, at a moment chosen
exactly instead of by luck.

Armed once at the edge (`WORKER_CRASH_AT=<point>[:<n>]`, read by the command line) or
by a test (`arm`); unarmed, `reached` costs one comparison. `<n>` (default 1) is the
n-th time the point is reached in the process.

What each point leaves behind, and who picks it up:

- `after_select`: a pass chose its due records and wrote nothing for them; its `passes`
  row stays `running`. The next pass selects them again.
- `in_chunk`: inside a chunk's transaction, after its writes and before its commit: the
  database rolls the chunk back; the next pass evaluates it again.
- `after_claim`: a drain leased a batch and sent none of it: the rows wait for their
  lease to end, then any drain takes them.
- `after_accept`: the server said 250 and the outcome is not recorded: that notice (and
  any other accepted outcome not yet committed) goes out again, with the same
  Message-ID, after the lease. The only point that sends twice.
- `in_claim`: inside the transaction of a drain's next claim, every earlier outcome
  committed: the claim is rolled back; nothing is lost, nothing is sent twice.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_select", "in_chunk", "after_claim", "after_accept", "in_claim")


class _Armed:
    point: str | None = None
    at: int = 1
    reached: int = 0


_ARMED = _Armed()


def parse(spec: str) -> tuple[str, int]:
    """`"after_accept:3"` -> ("after_accept", 3); a wrong spec raises ValueError."""
    point, _, count = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"unknown point {point!r} "
                         f"(expected one of {', '.join(POINTS)})")
    if count and (not count.isdigit() or int(count) < 1):
        raise ValueError(f"{count!r} is not a count of 1 or more")
    return point, int(count or 1)


def arm(spec: str | None) -> None:
    """Crash at `spec` (see `parse`); None or "" disarms."""
    _ARMED.point, _ARMED.at = parse(spec) if spec else (None, 1)
    _ARMED.reached = 0


def reached(point: str) -> None:
    """Die here if this is the armed point's n-th visit."""
    if _ARMED.point != point:
        return
    _ARMED.reached += 1
    if _ARMED.reached >= _ARMED.at:
        os.kill(os.getpid(), signal.SIGKILL)
