"""One bounce report recorded, in one transaction.

Each failure is matched to a notice and one of its recipients: by our envelope sender
(the notice's token, and the check that names the recipient), else by the Message-ID the
report quotes and the address it names. Then:

- the failure is kept once per (report, recipient) in `bounce_reports` (ON CONFLICT DO
  NOTHING): the same report read twice changes nothing;
- a permanent failure (5.x.x) of a recipient not yet `bounced` makes its result
  `bounced` (with the status, the diagnostic and the moment), suppresses the address
  (worker.mail.suppressions) and writes `notification.bounced`, last;
- a temporary one (4.x.x) is only kept;
- a failure that matches no notice is kept and reported `unmatched`: nothing is
  suppressed on the word of a report about mail the worker may not have sent.

The notice may have been sent by any replica: everything needed is in its row.
A crash before the commit leaves nothing: reading the report again records it.

Imports: worker.mail.bounces.parse, worker.mail.suppressions, worker.mail.senders,
worker.events, worker.db.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.db.schema import BOUNCE_REPORTS, NOTIFICATIONS
from worker.events import bounced_event, insert_events
from worker.mail.bounces.parse import Failure, Report
from worker.mail.suppressions import suppress

BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class Matched:
    """What became of one failure: `bounced`, `noted` (temporary), `already` (read
    before), or `unmatched`."""

    outcome: str
    recipient: str
    notification_id: int | None
    permanent: bool
    status: str | None
    diagnostic: str | None

    def line(self) -> str:
        notice = f"notice {self.notification_id}" if self.notification_id else "no notice"
        why = " ".join(x for x in (self.status, self.diagnostic) if x)
        return f"{self.outcome}: {self.recipient or '?'} ({notice}){': ' + why if why else ''}"


def record_report(connection: Connection, report: Report, *, source: str,
                  now: datetime) -> list[Matched]:
    """Record `report` (module docstring); returns what became of each failure."""
    tokens = [envelope.token for envelope in report.envelopes]
    by_token = _notices(connection, NOTIFICATIONS.c.bounce_token, tokens)
    by_message_id = _notices(connection, NOTIFICATIONS.c.message_id, report.message_ids)
    done, events = [], []
    for failure in report.failures:
        notice, recipient = _match(failure, report, by_token, by_message_id,
                                   single=len(report.failures) == 1)
        matched = _record(connection, report, failure, notice, recipient, source, now)
        done.append(matched)
        if matched.outcome == BOUNCED and notice is not None:
            events.append(bounced_event(notice, recipient, failure.status,
                                        failure.diagnostic, now))
    insert_events(connection, events, now)  # last: the feed's lock (worker.events.write)
    return done


def _notices(connection: Connection, column: Any, keys: Sequence[str]) -> dict[str, Any]:
    if not keys:
        return {}
    query = select(NOTIFICATIONS).where(column.in_(list(keys)))
    return {getattr(row, column.name): dict(row._mapping) for row in connection.execute(query)}


def _match(failure: Failure, report: Report, by_token: dict[str, Any],
           by_message_id: dict[str, Any], *, single: bool) -> tuple[Any, str]:
    """(the notice, the recipient as the notice holds it), or (None, the address)."""
    for envelope in report.envelopes:
        notice = by_token.get(envelope.token)
        named = [r for r in (notice or {}).get("recipients") or () if envelope.names(r)]
        if named and (single or failure.address in ("", named[0].lower())):
            return notice, named[0]
    for notice in by_message_id.values():
        for recipient in notice.get("recipients") or ():
            if recipient.lower() == failure.address:
                return notice, recipient
    return None, failure.address


def _record(connection: Connection, report: Report, failure: Failure, notice: Any,
            recipient: str, source: str, now: datetime) -> Matched:
    notification_id = notice["id"] if notice is not None else None

    def outcome(word: str) -> Matched:
        return Matched(word, recipient, notification_id, failure.permanent, failure.status,
                       failure.diagnostic)

    if not _keep(connection, report, failure, recipient, notification_id, source, now):
        return outcome("already")
    if notice is None:
        return outcome("unmatched")
    if not failure.permanent:
        return outcome("noted")
    results = {a: dict(r) for a, r in (notice.get("recipient_results") or {}).items()}
    if results.get(recipient, {}).get("status") == BOUNCED:
        return outcome("already")
    results[recipient] = {**results.get(recipient, {}), "status": BOUNCED,
                          "code": failure.status, "reply": (failure.diagnostic or "")[:500],
                          "at": now.isoformat()}
    connection.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == notification_id)
                       .values(recipient_results=results))
    notice["recipient_results"] = results
    suppress(connection, recipient, reason=failure.diagnostic or failure.status or "bounced",
             source=f"bounce of notification {notification_id} ({notice['kind']} "
                    f"{notice['ref']}), {source}",
             status=failure.status, notification_id=notification_id, now=now)
    return outcome(BOUNCED)


def _keep(connection: Connection, report: Report, failure: Failure, recipient: str,
          notification_id: int | None, source: str, now: datetime) -> bool:
    """The failure kept once per (report, recipient): False when it was already."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(BOUNCE_REPORTS).values(
        digest=report.digest, recipient=(recipient or failure.address or "?").lower(),
        notification_id=notification_id, permanent=failure.permanent, status=failure.status,
        diagnostic=failure.diagnostic, source=source[:500], received_at=now,
    ).on_conflict_do_nothing(index_elements=["digest", "recipient"])
    return bool(connection.execute(statement).rowcount)
