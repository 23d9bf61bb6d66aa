"""One pass: due ids -> claimed chunks -> rules -> effects, each chunk in one transaction.

* `run`: the pass itself (chunks, stop requests, the digest, the drain at its end);
* `snapshots`: the rows a rule needs, read as values;
* `evaluate`: one record's rules applied at the pass moment, decisions into a batch;
* `effects`: a batch written (updates, audit trail, notices once only, events);
* `digests`: the digest's groups, read from what passes stored;
* `ledger`: the pass's row (who runs it, heartbeat, how it ended, abandoned passes).

Imports: worker.mail (messages built at queue time, the dry run's plan), worker.events,
worker.db, worker.rules, worker.config, worker.support, worker.errors. Never
worker.importing.
"""
