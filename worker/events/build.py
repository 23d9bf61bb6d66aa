"""Pure builders: a change the worker made -> the event row that tells the portal.

Each builder takes what was written (an audit row, a notice's final state) and the facts
around it, and returns the event's row without its identity (`id`, `seq`, `created_at`:
the writer adds them). `data` holds exactly what the portal needs to act without asking
back; its field names are the interface's and never change meaning:

- `subscription.status_changed`: id, customer_id, reseller_id, from, to, effective_on,
  reason, anniversary_date
- `customer.payment_standing_changed`: id, reseller_id, from, to, effective_on, reason
- `customer.account_state_changed`: id, reseller_id, from, to, effective_on, cause
- `reseller_change_code.status_changed`: id, customer_id, reseller_id, from, to,
  effective_on, effective_at, reason
- `notification.sent`, `.failed`, `.dead`, `.cancelled`: notification_id, kind, ref,
  audience, recipients, message_id, status, reseller_id, recipient_results
- `notification.bounced`: notification_id, kind, ref, recipient, status, diagnostic,
  audience, message_id, reseller_id (one per recipient whose address failed for good)

`anniversary_date` is the subscription's as the pass left it (after a renewal, the new
one). Dates are ISO 8601 strings; instants are UTC with their offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from worker.rules.payments import effective_account_state

SUBSCRIPTION_STATUS = "subscription.status_changed"
PAYMENT_STANDING = "customer.payment_standing_changed"
ACCOUNT_STATE = "customer.account_state_changed"
CODE_STATUS = "reseller_change_code.status_changed"
NOTIFICATION_FINAL = ("sent", "failed", "dead", "cancelled")
NOTIFICATION_TYPES = tuple(f"notification.{status}" for status in NOTIFICATION_FINAL)
NOTIFICATION_BOUNCED = "notification.bounced"
TYPES = (SUBSCRIPTION_STATUS, PAYMENT_STANDING, ACCOUNT_STATE, CODE_STATUS, *NOTIFICATION_TYPES,
         NOTIFICATION_BOUNCED)

# The audit trail's record types, as subjects of events.
SUBJECTS = {"subscription": "subscription", "customer": "customer",
            "code": "reseller_change_code"}
PERSON_STATE = "customer.person_state_changed"
_TYPE_OF = {("subscription", "status"): SUBSCRIPTION_STATUS,
            ("customer", "payment_standing"): PAYMENT_STANDING,
            ("code", "status"): CODE_STATUS,
            # An import changing the state a person set: its own audit row's event; the
            # EFFECTIVE state's move, when there is one, is `customer.account_state_changed`.
            ("customer", "account_state"): PERSON_STATE}

Row = dict[str, Any]


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def event_type(record_type: str, field: str) -> str:
    """The type of the event of an audit row. A field without a type of its own still
    gets one (`customer.invitation_status_changed`): every audit row has its event."""
    return _TYPE_OF.get((record_type, field),
                        f"{SUBJECTS.get(record_type, record_type)}.{field}_changed")


def transition_event(
    transition: Mapping[str, Any], transition_id: int, about: Mapping[str, Any],
    moment: datetime,
) -> Row:
    """The event of one audit row (`transitions`), written by the pass at `moment`.

    `about` holds the record's context the row does not: `customer_id`, `reseller_id`,
    and for subscriptions `anniversary_date`."""
    record_type, record_id = transition["record_type"], transition["record_id"]
    data: dict[str, Any] = {"id": record_id}
    if record_type != "customer":
        data["customer_id"] = about.get("customer_id")
    data.update({
        "reseller_id": about.get("reseller_id"), "from": transition["from_value"],
        "to": transition["to_value"], "effective_on": _iso(transition["effective_on"]),
        "reason": transition["reason"],
    })
    if record_type == "subscription":
        data["anniversary_date"] = _iso(about.get("anniversary_date"))
    if transition.get("effective_at") is not None:
        data["effective_at"] = _iso(transition["effective_at"])
    return {
        "type": event_type(record_type, transition["field"]),
        "subject_type": SUBJECTS.get(record_type, record_type), "subject_id": record_id,
        "reseller_id": about.get("reseller_id"), "occurred_at": moment,
        "pass_id": transition.get("pass_id"), "transition_id": transition_id,
        "notification_id": None, "data": data,
    }


def account_state_event(
    customer_id: str, reseller_id: str | None, before: tuple[str, str],
    after: tuple[str, str], moment: datetime, *, effective_on: date | None = None,
    cause: str, pass_id: int | None = None,
) -> Row | None:
    """The event of a customer's EFFECTIVE account state moving, or None if it did not.

    `before` and `after` are (the person's state, the payment standing); the effective
    state is `suspended` when either says so, else the person's state. `cause` says
    which moved: `payment_standing` (a pass) or `person` (an import)."""
    old, new = effective_account_state(*before), effective_account_state(*after)
    if old == new:
        return None
    return {
        "type": ACCOUNT_STATE, "subject_type": "customer", "subject_id": customer_id,
        "reseller_id": reseller_id, "occurred_at": moment, "pass_id": pass_id,
        "transition_id": None, "notification_id": None,
        "data": {"id": customer_id, "reseller_id": reseller_id, "from": old, "to": new,
                 "effective_on": _iso(effective_on or moment.date()), "cause": cause},
    }


def account_state_events(
    transitions: list[tuple[Mapping[str, Any], Mapping[str, Any]]], moment: datetime
) -> list[Row]:
    """The effective-state moves that payment-standing audit rows imply, in order.

    Each item is (an audit row, its `about`); `about["account_state"]` is the person's
    state, which a pass never changes."""
    found = []
    for transition, about in transitions:
        if (transition["record_type"], transition["field"]) != ("customer", "payment_standing"):
            continue
        person = str(about.get("account_state") or "active")
        event = account_state_event(
            transition["record_id"], about.get("reseller_id"),
            (person, transition["from_value"] or "current"), (person, transition["to_value"]),
            moment, effective_on=transition["effective_on"], cause="payment_standing",
            pass_id=transition.get("pass_id"))
        if event is not None:
            found.append(event)
    return found


def notification_event(notice: Mapping[str, Any], status: str, occurred_at: datetime) -> Row:
    """The event of a notice reaching the final delivery state `status`.

    `notice` is the notification row as it stands after the change (id, kind, ref,
    audience, recipients, message_id, reseller_id, recipient_results)."""
    if status not in NOTIFICATION_FINAL:
        raise ValueError(f"not a final delivery state: {status!r}")
    return {
        "type": f"notification.{status}", "subject_type": "notification",
        "subject_id": str(notice["id"]), "reseller_id": notice.get("reseller_id"),
        "occurred_at": occurred_at, "pass_id": None, "transition_id": None,
        "notification_id": notice["id"],
        "data": {"notification_id": notice["id"], "kind": notice["kind"],
                 "ref": notice["ref"], "audience": notice["audience"],
                 "recipients": list(notice.get("recipients") or ()),
                 "message_id": notice.get("message_id"), "status": status,
                 "reseller_id": notice.get("reseller_id"),
                 "recipient_results": dict(notice.get("recipient_results") or {})},
    }


def bounced_event(notice: Mapping[str, Any], recipient: str, status: str | None,
                  diagnostic: str | None, occurred_at: datetime) -> Row:
    """The event of one recipient of a sent notice bouncing for good. Its subject is the
    notice; `notification_id` stays empty, as that column holds one event per final
    state of a notice and a notice may bounce for each of its recipients."""
    return {
        "type": NOTIFICATION_BOUNCED, "subject_type": "notification",
        "subject_id": str(notice["id"]), "reseller_id": notice.get("reseller_id"),
        "occurred_at": occurred_at, "pass_id": None, "transition_id": None,
        "notification_id": None,
        "data": {"notification_id": notice["id"], "kind": notice["kind"], "ref": notice["ref"],
                 "recipient": recipient, "status": status, "diagnostic": diagnostic,
                 "audience": notice.get("audience"), "message_id": notice.get("message_id"),
                 "reseller_id": notice.get("reseller_id")},
    }


def settled_at(notice: Mapping[str, Any], status: str, default: datetime) -> datetime:
    """When a notice reached its final state: `sent_at` when sent, else the latest answer
    a recipient got, else `default` (a cancellation, a notice without recipients)."""
    if status == "sent" and notice.get("sent_at") is not None:
        return notice["sent_at"]  # type: ignore[no-any-return]
    answers = [result.get("at") for result in (notice.get("recipient_results") or {}).values()
               if isinstance(result, Mapping) and result.get("at")]
    moments = []
    for answer in answers:
        try:
            moments.append(datetime.fromisoformat(str(answer)))
        except ValueError:
            continue
    return max(moments) if moments else default
