"""Standard Webhooks v1: the body of an event and the headers of one attempt.

The body is built once per event and is the same bytes on every attempt and to every
endpoint; only `webhook-timestamp` (the attempt's Unix seconds) and so the signatures
change between attempts. `webhook-id` is the event's id, the receiver's de-duplication
key. Signatures come from the specification's own package (`standardwebhooks`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from math import floor
from typing import Any

from standardwebhooks import Webhook


def event_body(event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> bytes:
    """`{"type", "timestamp", "data"}` as compact UTF-8 JSON; `timestamp` is when the
    change took effect (ISO 8601, UTC), not when it is pushed."""
    document = {"type": event_type,
                "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "data": dict(data)}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@lru_cache(maxsize=64)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def signature(secrets: Sequence[str], webhook_id: str, at: datetime, body: bytes) -> str:
    """`v1,<base64>` per secret, space-separated (two during a rotation)."""
    return " ".join(_signer(secret).sign(webhook_id, at, body) for secret in secrets)


def headers(secrets: Sequence[str], webhook_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The request headers of one attempt made at `at` (the real time of sending)."""
    return {"webhook-id": webhook_id, "webhook-timestamp": str(floor(at.timestamp())),
            "webhook-signature": signature(secrets, webhook_id, at, body),
            "content-type": "application/json"}
