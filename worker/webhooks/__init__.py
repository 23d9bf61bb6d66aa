"""Signed webhooks: every event of the change feed pushed to the portal's endpoints.

`config` (endpoints from WEBHOOK_URL and WORKER_CONFIG), `signing` (Standard Webhooks v1),
`schedule` (pure retry decisions), `store` (the delivery tables: enqueue, claims,
settlements, replay), `push` (the drain over httpx). `push.push_due` is the entry
point; `replay` (below) is what `events replay` calls.

This package is imported early (settings and policy use `config`'s checks), so the
pusher and its HTTP client load only when `replay` is asked for.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "replay":
        from worker.webhooks.push import replay  # noqa: PLC0415 - loaded when used

        return replay
    raise AttributeError(name)
