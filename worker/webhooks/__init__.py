"""Signed webhooks: every event of the change feed pushed to the portal's endpoints.

`signing` (Standard Webhooks v1), `schedule` (pure retry decisions), `store` (the
delivery tables: enqueue, claims, settlements, replay), `push` (the queue the drain
serves over httpx; `push_due` and `replay` are what the commands call). The endpoints
themselves come from the configuration (`worker.config.endpoints`).

Imports: worker.drain, worker.events, worker.db, worker.config, worker.support,
worker.errors. Never worker.mail: mail and webhooks do not know each other.
"""
