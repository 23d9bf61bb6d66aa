"""Suppressed addresses: no notice goes to them until the suppression is lifted.

An address is suppressed when a bounce report says it failed for good (worker.mail.
bounces). The mail queue gives such a recipient the result `suppressed` instead of
sending to it (the others on the notice still get theirs; a notice left with none is
`cancelled`). A suppression is lifted by `suppressions remove` or by an import that
changes the contact's address; its row stays, with when and by what, so that history
keeps it. Addresses are kept in lowercase.

Imports: worker.db.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.db.schema import SUPPRESSIONS

_ACTIVE = SUPPRESSIONS.c.lifted_at.is_(None)


def suppress(connection: Connection, address: str, *, reason: str, source: str,
             status: str | None, notification_id: int | None, now: datetime) -> bool:
    """Suppress `address` from `now` (a lifted suppression is put back, with the new why).
    True when it was not suppressed before."""
    values = {"address": address.lower(), "reason": reason[:2000], "source": source[:500],
              "status": status, "notification_id": notification_id, "since": now,
              "lifted_at": None, "lifted_by": None}
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(SUPPRESSIONS).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[SUPPRESSIONS.c.address],
        set_={key: statement.excluded[key] for key in values if key != "address"},
        where=SUPPRESSIONS.c.lifted_at.is_not(None))
    return bool(connection.execute(statement).rowcount)


def lift(connection: Connection, addresses: Iterable[str], *, by: str,
         now: datetime) -> list[str]:
    """Lift the suppressions of `addresses`; returns those that were suppressed."""
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return []
    statement = (update(SUPPRESSIONS).where(SUPPRESSIONS.c.address.in_(wanted), _ACTIVE)
                 .values(lifted_at=now, lifted_by=by[:200])
                 .returning(SUPPRESSIONS.c.address))
    return sorted(connection.execute(statement).scalars())


def suppressed_among(connection: Connection, addresses: Iterable[str]) -> dict[str, Any]:
    """{address (lowercase): its suppression row} for those of `addresses` suppressed."""
    wanted = sorted({a.lower() for a in addresses if a})
    if not wanted:
        return {}
    query = select(SUPPRESSIONS).where(SUPPRESSIONS.c.address.in_(wanted), _ACTIVE)
    return {row.address: row for row in connection.execute(query)}


def any_suppressed(connection: Connection) -> bool:
    return bool(connection.scalar(select(func.count()).select_from(SUPPRESSIONS)
                                  .where(_ACTIVE)))


def suppressions(connection: Connection) -> Sequence[Any]:
    """Every address suppressed now, oldest first."""
    query = select(SUPPRESSIONS).where(_ACTIVE).order_by(SUPPRESSIONS.c.since,
                                                         SUPPRESSIONS.c.address)
    return list(connection.execute(query))
