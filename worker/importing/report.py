"""What an import did (or, with `dry_run`, would do): counts, and record by record what
changed (`subscriptions[s1].licences: 10 → 12`) and what was not copied, and why
(`subscriptions[s1].anniversary_date: ignored, earlier than the one held (2027-03-15)`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from worker.importing.carry import shown
from worker.importing.merge import Note

NO_CHANGE = "no change"


@dataclass(frozen=True)
class SectionCounts:
    """How many of a section's records the import created, updated or left as they were."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One value the import changes: `field` as the report names it, `column` as stored."""

    field: str
    column: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class RecordReport:
    """One record the import creates, changes, or declines to change in part."""

    section: str
    id: str
    outcome: str  # created, updated, unchanged
    changes: tuple[FieldChange, ...] = ()
    notes: tuple[Note, ...] = ()

    def lines(self) -> list[str]:
        where = f"{self.section}[{self.id}]"
        if self.outcome == "created":
            return [f"{where}: new"]
        lines = [f"{where}.{change.field}: {shown(change.before)} → {shown(change.after)}"
                 for change in self.changes]
        return lines + [f"{where}.{note.field}: {note.text}" for note in self.notes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section, "id": self.id, "outcome": self.outcome,
            "changes": [{"field": change.field, "from": _plain(change.before),
                         "to": _plain(change.after)} for change in self.changes],
            "notes": [{"field": note.field, "note": note.text} for note in self.notes],
        }


def _plain(value: Any) -> Any:
    """A value as JSON holds it: dates and times in ISO 8601."""
    return value.isoformat() if hasattr(value, "isoformat") else value


@dataclass(frozen=True)
class ImportReport:
    """Per-section counts, the records changed or noted, the warnings (unknown fields,
    ignored), whether it was a dry run, and the import's id in the audit trail.

    "unchanged" means the merged record equals the stored one: nothing was written for it.
    """

    resellers: SectionCounts = SectionCounts()
    customers: SectionCounts = SectionCounts()
    subscriptions: SectionCounts = SectionCounts()
    purchase_authorizations: SectionCounts = SectionCounts()
    reseller_change_codes: SectionCounts = SectionCounts()
    warnings: tuple[str, ...] = ()
    dry_run: bool = False
    # The detail, left out of comparisons: two reports are equal when their counts are.
    records: tuple[RecordReport, ...] = field(default=(), compare=False)
    import_id: int | None = field(default=None, compare=False)

    def sections(self) -> dict[str, SectionCounts]:
        """The counts by section name, in the file's section order."""
        return {
            "resellers": self.resellers,
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "purchase_authorizations": self.purchase_authorizations,
            "reseller_change_codes": self.reseller_change_codes,
        }

    @property
    def changed(self) -> bool:
        return any(counts.created or counts.updated for counts in self.sections().values())

    def __str__(self) -> str:
        """One line for the terminal: `customers 2 created, 1 updated, 0 unchanged; …`."""
        parts = [
            f"{name} {counts.created} created, {counts.updated} updated, "
            f"{counts.unchanged} unchanged"
            for name, counts in self.sections().items()
            if counts != SectionCounts()
        ]
        text = "; ".join(parts) or "no records"
        if self.warnings:
            text += f" ({len(self.warnings)} warning(s))"
        return text

    def lines(self) -> list[str]:
        """Record by record, what the import changes and what it ignores; `no change`
        when it changes nothing (notes on ignored values still listed)."""
        lines = [line for record in self.records for line in record.lines()]
        return lines if self.changed else [NO_CHANGE, *lines]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json` output."""
        counts = {name: asdict(counts) for name, counts in self.sections().items()}
        return {"dry_run": self.dry_run, "import_id": self.import_id, "changed": self.changed,
                **counts, "warnings": list(self.warnings),
                "records": [record.as_dict() for record in self.records]}
