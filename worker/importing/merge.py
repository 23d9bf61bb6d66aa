"""The merged record: the stored row, changed by the fields the file carries.

How each field merges is `worker.importing.ownership`'s table (which imports this
module); this module holds what the merge works on: the file and the database together
(`World`), each record's result (`Merged`: the row as the import would leave it, and the
notes (`Note`) on what it declined to copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.config.policy import Policy
from worker.importing.parse import Incoming
from worker.importing.problems import SECTIONS

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Note:
    """Something the import did not simply copy: `field` as the file names it."""

    field: str
    text: str


@dataclass(slots=True)
class Merged:
    record: Incoming
    stored: Row | None
    row: Row
    owned: tuple[str, ...]  # the columns an import may write (worker.importing.ownership)
    notes: list[Note] = field(default_factory=list)
    _changes: Row | None = None

    @property
    def is_new(self) -> bool:
        return self.stored is None

    def changes(self) -> Row:
        """The owned columns whose merged value differs from the stored one (computed once:
        the merge is done when the report and the writing ask)."""
        if self._changes is None:
            columns = self.owned
            row, stored = self.row, self.stored
            if stored is None:
                self._changes = {name: row.get(name) for name in columns}
            else:
                self._changes = {name: row.get(name) for name in columns
                                 if row.get(name) != stored.get(name)}
        return dict(self._changes)


@dataclass
class World:
    """What the file and the database hold together, as the import would leave it."""

    policy: Policy
    file_ids: dict[str, set[str]]
    stored: dict[str, dict[str, Row]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    merged: dict[str, dict[str, Merged]] = field(
        default_factory=lambda: {s: {} for s in SECTIONS}
    )

    def row(self, section: str, record_id: Any) -> Row | None:
        """The merged row if the file carries the record, else the stored one."""
        if not isinstance(record_id, str):
            return None
        merged = self.merged[section].get(record_id)
        return merged.row if merged is not None else self.stored[section].get(record_id)

    def known(self, section: str, record_id: str) -> bool:
        return record_id in self.file_ids[section] or record_id in self.stored[section]

    def sound(self, section: str, record_id: Any, name: str) -> bool:
        """False when the file carries this record with a refused value for `name`."""
        merged = self.merged[section].get(record_id) if isinstance(record_id, str) else None
        return merged is None or merged.record.sound(name)
