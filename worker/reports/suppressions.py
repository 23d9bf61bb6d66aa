"""`suppressions`: the addresses no notice goes to, with why, where from and since when.

Imports: worker.mail.suppressions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from worker.mail.suppressions import suppressions


def suppression_rows(connection: Connection) -> list[dict[str, Any]]:
    """Every suppressed address: address, reason, status, source, since, notification."""
    return [{"address": row.address, "reason": row.reason, "status": row.status,
             "source": row.source, "since": row.since.isoformat(),
             "notification_id": row.notification_id} for row in suppressions(connection)]


def suppressions_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no address is suppressed\n"
    lines = [f"{len(rows)} suppressed address(es)"]
    for row in rows:
        lines += [f"  {row['address']}  since {row['since']}  {row['status'] or ''}",
                  f"    why: {row['reason']}", f"    from: {row['source']}"]
    return "\n".join(lines) + "\n"
