"""Event rows written straight into the feed, and settings for webhook tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert

from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.schema import EVENTS

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def add_event(target: Engine | Connection, event_type: str = "subscription.status_changed",
              **data: Any) -> tuple[int, str]:
    """One event row as the pass writes it; returns (seq, id)."""
    event_id = f"evt_{uuid.uuid4().hex}"
    values = {"id": event_id, "type": event_type,
              "subject_type": event_type.split(".", maxsplit=1)[0],
              "subject_id": str(data.get("id", "s1")), "reseller_id": "r1",
              "occurred_at": T0, "created_at": T0,
              "data": {"id": "s1", "from": "active", "to": "grace", **data}}
    if isinstance(target, Engine):
        with target.begin() as connection:
            seq = connection.execute(insert(EVENTS).values(values).returning(EVENTS.c.seq))
            return int(seq.scalar_one()), event_id
    seq = target.execute(insert(EVENTS).values(values).returning(EVENTS.c.seq))
    return int(seq.scalar_one()), event_id


def settings_for(url: str, secret: str = SECRET) -> Settings:
    return Settings(webhook_url=url, webhook_secret=secret)


def with_webhooks(policy: Policy, **changes: Any) -> Policy:
    """`policy` with [webhooks] keys changed (endpoints as dicts, validated)."""
    section = policy.webhooks.model_dump() | changes
    return policy.model_copy(update={"webhooks": type(policy.webhooks).model_validate(section)})
