"""Mail: from a queued notice to a message accepted by the server.

* `decisions`: pure choices (send window, retry, settling one attempt per recipient);
* `render`, `messages`, `compose`: templates (Jinja2, Babel), headers and MIME, a
  notice's message built once and stamped at each hand-over;
* `samples`: realistic payloads for previews and tests;
* `store`: the notifications table as the drain sees it (claims, outcomes, messages);
* `drain`: the mail queue for worker.drain, and `deliver_due`, what commands call;
* `transports/`: SMTP (aiosmtplib), `.eml` files, the in-memory twin;
* `dkim`: the keys of `[[dkim]]` and the signature put on at hand-over;
* `senders`: From (the reseller, or the fallback sender in its name) and the envelope
  senders that name a notice and a recipient;
* `bounces/`: bounce reports read, matched to a notice's recipient and recorded;
* `suppressions`: the addresses no notice goes to.

Imports: worker.drain, worker.events, worker.db, worker.rules, worker.config,
worker.support, worker.errors. Never worker.webhooks.
"""
