"""One leased-queue drain for both queues, the mail and the webhooks.

* `drain`: claim with a lease, heartbeat, send with bounded concurrency, group-commit
  outcomes, release on stop, wait out outages, hold poison pills;
* `writer`: the group commit of outcomes (nothing cleared before its commit);
* `schedule`: the retry schedule (delays, jitter, lease, batch, hold) and its arithmetic.

A queue (worker.mail.drain.MailQueue, worker.webhooks.push.WebhookQueue) gives only what
differs: what to claim and send, how to settle an answer, how to record it.

Imports: worker.db, worker.support, worker.errors.
"""
