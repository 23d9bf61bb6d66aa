"""Reading the change feed: `events --after SEQ`, and the events `events replay` names.

A poller keeps the last `seq` it handled and asks for what follows; since event-writing
transactions commit in `seq` order (worker.events.write), nothing can appear later
below its cursor. `timestamp` is the moment of the change (`occurred_at`: the pass
moment, or when the notice was settled); `created_at` the real time it was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from worker.db.schema import EVENTS

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def event_json(row: Row[Any]) -> dict[str, Any]:
    """One event as the feed shows it (and as `history` and replays carry it)."""
    return {"seq": row.seq, "id": row.id, "type": row.type,
            "timestamp": row.occurred_at.isoformat(), "created_at": row.created_at.isoformat(),
            "subject": {"type": row.subject_type, "id": row.subject_id},
            "reseller_id": row.reseller_id, "data": row.data}


def events_after(connection: Connection, after: int, limit: int = DEFAULT_LIMIT) -> list[Row[Any]]:
    """Up to `limit` events with `seq` above `after`, in `seq` order (primary key)."""
    query = select(EVENTS).where(EVENTS.c.seq > after).order_by(EVENTS.c.seq).limit(limit)
    return list(connection.execute(query))


def feed_page(connection: Connection, after: int, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """`events --format json`: the page and the cursor to ask from next time."""
    rows = events_after(connection, after, limit)
    return {"events": [event_json(row) for row in rows],
            "next_after": rows[-1].seq if rows else after,
            "more": len(rows) == limit}


def events_by_seq(connection: Connection, seqs: Sequence[int]) -> tuple[list[Row[Any]], list[int]]:
    """The events numbered `seqs`, in `seq` order, and the numbers no event has."""
    rows = list(connection.execute(select(EVENTS).where(EVENTS.c.seq.in_(set(seqs)))
                                   .order_by(EVENTS.c.seq)))
    found = {row.seq for row in rows}
    return rows, sorted({seq for seq in seqs if seq not in found})


def events_between(connection: Connection, start: datetime, end: datetime) -> list[Row[Any]]:
    """Events written (`created_at`, real time) in [start, end), in `seq` order: what a
    portal that lost data over that period of its own clock was sent or should have been.
    (`timestamp` is the change's moment, which a rehearsal `--as-of` may set anywhere.)"""
    query = (select(EVENTS).where(EVENTS.c.created_at >= start, EVENTS.c.created_at < end)
             .order_by(EVENTS.c.seq))
    return list(connection.execute(query))


def _summary(row: Any) -> str:
    data = row.data if isinstance(row.data, dict) else {}
    if row.type.startswith("notification."):
        recipients = ", ".join(str(r) for r in data.get("recipients") or ())
        return f"{data.get('kind')} {data.get('ref')} ({data.get('audience')}) -> {recipients}"
    moved = f"{data.get('from')} -> {data.get('to')}"
    on = f" on {data['effective_on']}" if data.get("effective_on") else ""
    return f"{row.subject_id}: {moved}{on}"


def feed_table(rows: Sequence[Row[Any]]) -> str:
    """`events --format table`: one line per event."""
    if not rows:
        return "no events\n"
    lines = [f"{'seq':>8}  {'timestamp':<20}  {'type':<38}  what"]
    lines += [f"{row.seq:>8}  {row.occurred_at.strftime('%Y-%m-%dT%H:%M:%SZ'):<20}  "
              f"{row.type:<38}  {_summary(row)}" for row in rows]
    return "\n".join(lines) + "\n"
