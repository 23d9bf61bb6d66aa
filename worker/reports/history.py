"""`history REF`: one record's whole story, in order, from what the database already keeps.

REF is the id of a subscription, a customer, a reseller-change code or a reseller (ids of
different kinds may coincide: every record with that id is told). The story gathers:

- status changes (`transitions`): date effective, from, to, reason, the pass that saw it;
- notices about the record (`notifications.ref`): delivery state, attempts and the
  server's answer per recipient;
- events whose subject is the record or one of those notices (`events`), each with its
  webhook deliveries (endpoint, state, attempts, last answer); a recipient that bounced
  shows `bounced` with the report's status, and its `notification.bounced` event.

Changes and notices are ordered by the moment the worker recorded them (the pass
moment), changes first; each event follows the change or notice it tells of (a notice's
final-state event is dated by its delivery, in real time, so it is not sorted by date).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from worker.db.leases import HELD
from worker.db.schema import (
    CODES,
    CUSTOMERS,
    EVENTS,
    NOTIFICATIONS,
    PASSES,
    RESELLERS,
    SUBSCRIPTIONS,
    TRANSITIONS,
    WEBHOOK_DELIVERIES,
)
from worker.events.feed import event_json
from worker.mail.decisions import WAITING
from worker.rules.payments import effective_account_state

# (what, table, audit record_type, event subject_type, columns shown as its current state)
_KINDS = (
    ("subscription", SUBSCRIPTIONS, "subscription", "subscription",
     ("customer_id", "reseller_id", "product", "status", "bucket", "anniversary_date")),
    ("customer", CUSTOMERS, "customer", "customer",
     ("reseller_id", "name", "payment_standing", "account_state", "invitation_status")),
    ("code", CODES, "code", "reseller_change_code",
     ("customer_id", "reseller_id", "status", "issued_at", "used_at")),
    ("reseller", RESELLERS, None, None, ("name", "email", "timezone")),
)
_HIDDEN_DELIVERY_COLUMNS = frozenset({"claim_token", "claimed_until"})


class UnknownRecord(LookupError):
    """No subscription, customer, code or reseller has this id."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def history(connection: Connection, ref: str) -> dict[str, Any]:
    """The story of `ref` (see the module docstring); raises UnknownRecord."""
    records = []
    for what, table, _, _, shown in _KINDS:
        row = connection.execute(select(table).where(table.c.id == ref)).first()
        if row is not None:
            records.append({"type": what, "id": ref,
                            **{name: _plain(getattr(row, name)) for name in shown}})
    if not records:
        raise UnknownRecord(f"no subscription, customer, code or reseller has the id {ref!r}")
    kinds = {record["type"] for record in records}
    audit_types = [k[2] for k in _KINDS if k[0] in kinds and k[2]]
    subject_types = [k[3] for k in _KINDS if k[0] in kinds and k[3]]
    changes = _changes(connection, ref, audit_types)
    notices = _notices(connection, ref)
    events = _events(connection, ref, subject_types, [n["notification_id"] for n in notices])
    entries = _in_order(changes, notices, events)
    return {"ref": ref, "records": [_effective(record) for record in records],
            "timeline": entries}


def _effective(record: dict[str, Any]) -> dict[str, Any]:
    """A customer's account state as exported (the effective one), beside the person's."""
    if record["type"] != "customer":
        return record
    person = record.pop("account_state")
    return {**record, "account_state": effective_account_state(person,
                                                              record["payment_standing"]),
            "person_account_state": person}


def _in_order(
    changes: list[dict[str, Any]], notices: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Changes and notices by the moment they were recorded; each event right after the
    change or notice it tells of (an event of neither by its own moment)."""
    keys: dict[tuple[str, int], tuple[str, int, int]] = {}
    for entry in changes:
        keys[("change", entry["transition_id"])] = (entry["at"] or "", 0, entry["transition_id"])
    for entry in notices:
        keys[("notice", entry["notification_id"])] = (entry["at"] or "", 1,
                                                      entry["notification_id"])

    def key(entry: dict[str, Any]) -> tuple[str, int, int, int]:
        if entry["entry"] == "change":
            return (*keys[("change", entry["transition_id"])], 0)
        if entry["entry"] == "notice":
            return (*keys[("notice", entry["notification_id"])], 0)
        cause = keys.get(("change", entry.pop("transition_id"))) or keys.get(
            ("notice", entry.pop("notification_id")))
        return (*(cause or (entry["at"] or "", 2, entry["seq"])), entry["seq"])

    return sorted([*changes, *notices, *events], key=key)


def _changes(connection: Connection, ref: str, record_types: Sequence[str]) -> list[dict[str, Any]]:
    if not record_types:
        return []
    t, p = TRANSITIONS.c, PASSES.c
    query = (select(TRANSITIONS, p.as_of).join(PASSES, PASSES.c.id == t.pass_id)
             .where(t.record_id == ref, t.record_type.in_(record_types)).order_by(t.id))
    return [{"entry": "change", "at": _plain(row.as_of),
             "record": row.record_type, "field": row.field, "from": row.from_value,
             "to": row.to_value, "reason": row.reason,
             "effective_on": _plain(row.effective_on), "effective_at": _plain(row.effective_at),
             "pass_id": row.pass_id, "transition_id": row.id}
            for row in connection.execute(query)]


def _notices(connection: Connection, ref: str) -> list[dict[str, Any]]:
    n = NOTIFICATIONS.c
    query = select(*(c for c in NOTIFICATIONS.c if c.name not in ("message_bytes", "payload",
                                                                  "claim_token"))
                   ).where(n.ref == ref).order_by(n.id)
    found = []
    for row in connection.execute(query):
        results = row.recipient_results or {}
        found.append({
            "entry": "notice", "at": _plain(row.created_at),
            "notification_id": row.id, "kind": row.kind, "audience": row.audience,
            "occasion": row.occasion, "occasion_date": _plain(row.occasion_date),
            "status": row.status, "attempts": row.attempts, "last_error": row.last_error,
            "sent_at": _plain(row.sent_at), "not_before": _plain(row.not_before),
            "message_id": row.message_id,
            "recipients": [_recipient(address, results, row.status)
                           for address in row.recipients or ()],
        })
    return found


def _recipient(address: str, results: dict[str, Any], status: str) -> dict[str, Any]:
    """The server's answer for one recipient, or the notice's state when none came yet."""
    answer = results.get(address)
    if isinstance(answer, dict):
        return {"address": address, **answer}
    return {"address": address, "status": "waiting" if status in WAITING else status}


def _events(
    connection: Connection, ref: str, subject_types: Sequence[str], notification_ids: list[int]
) -> list[dict[str, Any]]:
    e = EVENTS.c
    about: list[Any] = [e.notification_id.in_(notification_ids)] if notification_ids else []
    if notification_ids:  # `notification.bounced`: the notice is its subject (events.build)
        about.append((e.subject_type == "notification")
                     & e.subject_id.in_([str(i) for i in notification_ids]))
    if subject_types:
        about.append((e.subject_id == ref) & e.subject_type.in_(subject_types))
    if not about:
        return []
    rows = list(connection.execute(select(EVENTS).where(or_(*about)).order_by(e.seq)))
    deliveries = _deliveries(connection, [row.seq for row in rows])
    return [{"entry": "event", "at": _plain(row.occurred_at), **event_json(row),
             "transition_id": row.transition_id, "notification_id": row.notification_id,
             "deliveries": deliveries.get(row.seq, [])} for row in rows]


def _deliveries(connection: Connection, seqs: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Webhook deliveries per event seq (leases left out: they say nothing of the result)."""
    wanted = list(seqs)
    if not wanted:
        return {}
    table = WEBHOOK_DELIVERIES
    shown = [c for c in table.c if c.name not in _HIDDEN_DELIVERY_COLUMNS]
    found: dict[int, list[dict[str, Any]]] = {}
    query = select(*shown).where(table.c.event_seq.in_(wanted)).order_by(*table.primary_key)
    for row in connection.execute(query):
        found.setdefault(row.event_seq, []).append(
            {key: _plain(value) for key, value in row._mapping.items()})
    return found


def history_table(story: dict[str, Any]) -> str:
    """`history --format table`: the records, then one line (or a few) per entry."""
    lines = []
    for record in story["records"]:
        facts = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("type", "id"))
        lines.append(f"{record['type']} {record['id']}: {facts}")
    if not story["timeline"]:
        lines.append("  nothing has happened to it yet")
    for entry in story["timeline"]:
        lines += [f"  {line}" for line in _entry_lines(entry)]
    return "\n".join(lines) + "\n"


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    at = entry["at"] or "?"
    if entry["entry"] == "change":
        return [f"{at}  change  {entry['record']}.{entry['field']}: {entry['from']} -> "
                f"{entry['to']} (effective {entry['effective_on']}, {entry['reason']})"]
    if entry["entry"] == "notice":
        head = (f"{at}  notice  {entry['kind']} to {entry['audience']}: {entry['status']}"
                f" after {entry['attempts']} attempt(s)")
        recipients = [f"            {r['address']}: {r.get('status')}"
                      + (f" {r['code']}" if r.get("code") else "")
                      + (f" {r['reply']}" if r.get("reply") else "")
                      for r in entry["recipients"]]
        why = [f"            why: {entry['last_error']}"] if entry["status"] == HELD else []
        return [head, *why, *recipients]
    data = entry["data"] or {}
    moved = (f"{data.get('from')} -> {data.get('to')}" if "to" in data
             else f"{data.get('kind')} ({data.get('audience')})")
    if "recipient" in data:
        moved += f" {data['recipient']}: {data.get('status')} {data.get('diagnostic') or ''}"
    lines = [f"{at}  event   #{entry['seq']} {entry['type']} {moved}  [{entry['id']}]"]
    lines += [f"            delivery to {d.get('endpoint', '?')}: {d.get('status')}"
              f" after {d.get('attempts', 0)} attempt(s)" for d in entry["deliveries"]]
    return lines
