"""What a pass did: counts for operators, the detail for dry runs and forecasts (the text
and JSON forms are worker.reports.summary's).

Imports: worker.passes.effects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.passes.effects import Batch, Written


@dataclass
class PassSummary:
    """What a pass did: counts for operators, the detail for dry runs and forecasts."""

    as_of: datetime
    dry_run: bool
    pass_id: int | None = None
    evaluated: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    queued: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    delivery: Counter[str] = field(default_factory=Counter)
    transport: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "running"

    @property
    def interrupted(self) -> bool:
        return self.outcome == "interrupted"

    def absorb(self, batch: Batch, written: Written) -> None:
        for row in batch.transitions:
            self.changes[f"{row['record_type']}.{row['field']}: "
                         f"{row['from_value']} -> {row['to_value']}"] += 1
            self.transitions.append({
                "date": row["effective_on"].isoformat(), "record": row["record_type"],
                "ref": row["record_id"], "field": row["field"], "from": row["from_value"],
                "to": row["to_value"], "reason": row["reason"],
            })
        self.queued.update(written.queued)
        self.cancelled += written.cancelled
        self.notices += [{
            "date": row["occasion_date"].isoformat(), "kind": row["kind"], "ref": row["ref"],
            "audience": row["audience"], "recipients": row["recipients"],
        } for row in written.queued_rows]
        self.events += [{
            "type": event["type"], "timestamp": event["occurred_at"].isoformat(),
            "subject_type": event["subject_type"], "subject_id": event["subject_id"],
            "data": event["data"],
        } for event in written.events]

    def counts(self) -> dict[str, Any]:
        return {
            "evaluated": dict(self.evaluated), "changes": dict(self.changes),
            "queued": dict(self.queued), "cancelled": self.cancelled,
            "delivery": dict(self.delivery), "errors": len(self.errors),
        }

    def as_json(self) -> dict[str, Any]:
        return {"pass_id": self.pass_id, "as_of": self.as_of.isoformat(),
                "dry_run": self.dry_run, "outcome": self.outcome, **self.counts(),
                "transport": self.transport, "errors": self.errors,
                "transitions": self.transitions, "notices": self.notices,
                "events": self.events}
