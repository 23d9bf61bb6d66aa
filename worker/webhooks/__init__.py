"""Signed webhooks: every event of the change feed pushed to the portal's endpoints.

`config` (endpoints from WEBHOOK_URL and WORKER_CONFIG), `signing` (Standard Webhooks v1),
`schedule` (pure retry decisions), `store` (the delivery tables: enqueue, claims,
settlements, replay), `push` (the drain over httpx). `push.push_due` is the entry point.
"""
