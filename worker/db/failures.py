"""What a failed database call means, decided once for every caller.

- An **outage**: the database did not answer, or broke the connection (a restart, a
  refused connection, a lock on SQLite that did not clear). Waiting cures it: callers
  pause, retry with a growing delay, and log it once (worker.support.outage).
- A **conflict**: PostgreSQL chose this transaction as the victim of a deadlock
  (SQLSTATE 40P01) or could not serialise it (40001) and rolled it back. The database is
  fine and the same transaction, tried again at once, normally goes through; PostgreSQL's
  manual asks applications to do exactly that. Two transactions that lock the same rows
  in different orders meet this: a drain recording outcomes while its lease is extended,
  a pass cancelling notices a drain is recording. Never an outage: nothing is paused and
  no `database_unavailable` is logged.
- Anything else is a statement the database refuses: a bug, not retried.
"""

from __future__ import annotations

import random

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

CONFLICT_STATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
CONFLICT_FIRST = 0.02  # seconds before the first retry of a conflict
CONFLICT_MOST = 1.0


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of the driver's error behind `error` (psycopg), if any."""
    original = getattr(error, "orig", None) or error
    state = getattr(original, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_conflict(error: BaseException) -> bool:
    """A transaction rolled back by the server to break a deadlock or keep transactions
    serialisable: try it again."""
    return sqlstate(error) in CONFLICT_STATES


def is_outage(error: BaseException) -> bool:
    """The database is away (as opposed to a conflict, or a statement it refuses)."""
    if is_conflict(error):
        return False
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def conflict_delay(conflicts: int) -> float:
    """Seconds before trying again after the `conflicts`-th conflict in a row: short,
    doubling, and jittered, so that the two sides of a deadlock do not meet again."""
    ceiling = min(CONFLICT_MOST, CONFLICT_FIRST * 2 ** max(conflicts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - timing, not secrets


BACKOFF_FIRST, BACKOFF_CAP = 0.1, 10.0


def database_backoff(failures: int, first: float = BACKOFF_FIRST,
                     cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after `failures` (1, 2, …) failed attempts in a row: doubling
    from `first`, never more than `cap`. A restart of a few seconds is noticed within
    a fraction of a second of its end; an outage of hours costs one attempt per `cap`."""
    if failures < 1:
        return 0.0
    return float(min(cap, first * 2.0 ** min(failures - 1, 32)))
