"""One field of one record being merged: the values a field's merge reads and writes.

A field's merge (listed in `worker.importing.ownership`) sets the columns it owns on the
merged `row`, reading the field's carried `value`, the `stored` row (None for a new
record) and the other records (`world`). What it declines to do, and why, it says with
`note`: the import's report shows it (`subscriptions[s1].anniversary_date: ignored, …`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.importing.merge import Note, Row, World


@dataclass(slots=True)
class Carried:
    name: str
    value: Any
    row: Row
    stored: Row | None
    world: World
    notes: list[Note]

    @property
    def is_new(self) -> bool:
        return self.stored is None

    def note(self, text: str) -> None:
        self.notes.append(Note(self.name, text))


def replace(default: Any = None, *, column: str | None = None) -> Any:
    """The portal's value replaces the held one; `null` sets `default` (None if nullable)."""

    def merge(carried: Carried) -> None:
        value = carried.value
        carried.row[column or carried.name] = default if value is None else value

    return merge


def shown(value: Any) -> str:
    """A value as the report writes it: dates in ISO 8601, `none` for null."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)
