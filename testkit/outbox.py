"""Notifications in the outbox as a pass queues them (the payloads of
`worker.mail.samples`): one at a time for the outbox and delivery tests
(`queue_notice`), by the thousand for the delivery benchmarks (`notices`, `queue`)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert

from worker.db.schema import EVENTS, MESSAGES, WEBHOOK_DELIVERIES, metadata
from worker.mail.compose import build_for
from worker.mail.render import audiences_of
from worker.mail.samples import sample_row
from worker.rules.notices import KINDS

NOTIFICATIONS = metadata.tables["notifications"]


def queue_notice(
    engine: Engine, *, recipients: tuple[str, ...] = ("paul@dupont.example",),
    kind: str = "renewal_upcoming", audience: str = "customer", ref: str = "s1",
    timezone: str = "Europe/Paris", occasion_date: date = date(2027, 3, 10),
    locale: str = "fr", **columns: Any,
) -> int:
    """Insert one queued notification shaped as `worker.passes.effects` stores it (the payload
    of `worker.mail.samples`); return its id."""
    sample = sample_row(kind, audience, locale)
    sample["payload"]["recipient_names"] = [f"Contact {i}" for i in range(len(recipients))]
    row = {**{k: v for k, v in sample.items() if k != "id"},
           "ref": ref, "occasion": f"{ref}:{occasion_date.isoformat()}",
           "occasion_date": occasion_date, "reseller_id": "r-nuage",
           "recipients": list(recipients), "timezone": timezone, "attempts": 0,
           "created_at": datetime(2027, 3, 10, 8, 0, tzinfo=UTC), **columns}
    with engine.begin() as connection:
        return int(connection.execute(
            insert(NOTIFICATIONS).values(row).returning(NOTIFICATIONS.c.id)).scalar_one())


# --- by the thousand ---------------------------------------------------------------------


def sample_mix() -> list[dict[str, Any]]:
    """One sample row per kind, audience and locale (fr, en, fr_CA)."""
    return [sample_row(kind, audience, locale) for kind in KINDS
            for audience in audiences_of(kind) for locale in ("fr", "en", "fr_CA")]


def notices(count: int, moment: datetime) -> list[dict[str, Any]]:
    """`count` notification rows as a pass stores them at `moment`, numbered from 1."""
    mix = sample_mix()
    rows = []
    for number in range(1, count + 1):
        sample = mix[number % len(mix)]
        recipients = [f"client{number}.{i}@example.test"
                      for i in range(len(sample["recipients"]))]
        rows.append({**{k: v for k, v in sample.items() if k != "id"},
                     "id": number, "ref": f"ref{number}", "occasion": f"bench-{number}",
                     "occasion_date": moment.date(), "reseller_id": "r-nuage",
                     "recipients": recipients, "attempts": 0, "created_at": moment,
                     "status": "queued", "message_id": None})
    return rows


def build_all(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The rows with their messages built, as at queue time; and the build rate."""
    started = time.perf_counter()
    built = []
    for row in rows:
        data, message_id = build_for(_Row(row))  # type: ignore[arg-type]  # reads _mapping only
        built.append({**row, "message_bytes": data, "message_id": message_id})
    return built, len(rows) / (time.perf_counter() - started)


def queue(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Store `rows` as queued notifications, and their messages (`message_bytes`) if
    built, in place of the last run's."""
    with engine.begin() as connection:
        # The last run's outcomes and their events go first (events refer to notices).
        connection.execute(delete(WEBHOOK_DELIVERIES))
        connection.execute(delete(EVENTS))
        connection.execute(delete(MESSAGES))
        connection.execute(delete(NOTIFICATIONS))
        connection.execute(insert(NOTIFICATIONS),
                           [{k: v for k, v in row.items() if k != "message_bytes"}
                            for row in rows])
        messages = [{"notification_id": row["id"], "message_bytes": row["message_bytes"]}
                    for row in rows if row.get("message_bytes")]
        if messages:
            connection.execute(insert(MESSAGES), messages)


class _Row:
    """What `build_for` reads from a SQLAlchemy row: `_mapping`."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._mapping = values
