"""The change feed: one event per change the worker makes, in the change's transaction.

`build` turns what was written into event rows (pure); `write` inserts them in order
(and says why a poller can trust `seq`); `feed` reads them back for `events` and
`events replay`. One record's story is a report (worker.reports.history).

Imports: worker.db, worker.rules, worker.support, worker.errors.
"""

from worker.events.build import TYPES, account_state_event, bounced_event
from worker.events.write import (
    PersonStateChange,
    insert_events,
    record_account_states,
    record_final_notices,
    record_sent_notices,
)

__all__ = ["TYPES", "PersonStateChange", "account_state_event", "bounced_event",
           "insert_events",
           "record_account_states", "record_final_notices", "record_sent_notices"]
