"""Mail: from a queued notice to a message accepted by the server.

* `decisions`: pure choices (send window, retry, settling one attempt per recipient);
* `render`, `messages`, `compose`: templates (Jinja2, Babel), headers and MIME, a
  notice's message built once and stamped at each hand-over;
* `samples`: realistic payloads for previews and tests;
* `store`: the notifications table as the drain sees it (claims, outcomes, messages);
* `drain`: the mail queue for worker.drain, and `deliver_due`, what commands call;
* `transports/`: SMTP (aiosmtplib), `.eml` files, the in-memory twin.

Imports: worker.drain, worker.events, worker.db, worker.rules, worker.config,
worker.support, worker.errors. Never worker.webhooks.
"""
