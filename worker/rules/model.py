"""Frozen snapshots that rules read, and the decisions they return.

Rules are pure functions of (snapshot, moment or local date, policy). They never read the
clock or the database; the pass turns rows into these snapshots and carries out the
decisions (status changes, notices, the next time a record needs looking at).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from worker.rules.notices import FAMILY_OF


@dataclass(frozen=True, slots=True)
class Change:
    """A derived value that moved, with the date (and, for codes, the instant) it did."""

    field: str
    from_value: str | None
    to_value: str
    reason: str
    effective_on: date
    effective_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """A notice due about one record. `occasion` completes its once-only key."""

    kind: str
    ref: str
    occasion: str
    occasion_date: date
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def family(self) -> str | None:
        return FAMILY_OF.get(self.kind)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.ref, self.occasion)


def within_horizon(occasion: date, today: date, horizon_days: int) -> bool:
    """A notice whose occasion lies more than the horizon before today is never created."""
    return (today - occasion).days <= horizon_days
