"""What an import did (or, with `dry_run`, would do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SectionCounts:
    """How many of a section's records the import created, updated or left as they were."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class ImportReport:
    """Per-section counts, the warnings (unknown fields, ignored), and whether it was a dry run.

    "unchanged" means the merged record equals the stored one: nothing was written for it.
    """

    resellers: SectionCounts = SectionCounts()
    customers: SectionCounts = SectionCounts()
    subscriptions: SectionCounts = SectionCounts()
    purchase_authorizations: SectionCounts = SectionCounts()
    reseller_change_codes: SectionCounts = SectionCounts()
    warnings: tuple[str, ...] = ()
    dry_run: bool = False

    def sections(self) -> dict[str, SectionCounts]:
        """The counts by section name, in the file's section order."""
        return {
            "resellers": self.resellers,
            "customers": self.customers,
            "subscriptions": self.subscriptions,
            "purchase_authorizations": self.purchase_authorizations,
            "reseller_change_codes": self.reseller_change_codes,
        }

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

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `--json` output."""
        return asdict(self) | {"warnings": list(self.warnings)}
