"""Payment standing per customer (docs/rules.md, "Payment standing").

Days outstanding = the customer's local date - the request date of the oldest purchase
authorization still unpaid on that date (the request day is day 0). 0-30 `current`,
31-60 `late`, 61+ `suspended`. That oldest item is the episode; its notices go out once.

The standing is walked from the last one recorded through every date on which it may
have moved (an item's day 31 or 61, a payment, a new request), so each change is recorded
with its own date. Notices are read off the end: the episode's `payment_late` while late
(never for an episode reached by stepping down from `suspended`), its `payment_suspended`
while suspended, and `payment_reinstated` when a customer last seen late or suspended is
current again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from worker.config.policy import Policy
from worker.rules.model import Change, Notice, within_horizon

CURRENT = "current"
LATE = "late"
SUSPENDED = "suspended"
STANDINGS = (CURRENT, LATE, SUSPENDED)


@dataclass(frozen=True, slots=True)
class Invoice:
    """A purchase authorization or invoice: requested, and perhaps paid."""

    id: str
    requested_on: date
    paid_on: date | None

    def unpaid_on(self, day: date) -> bool:
        return self.requested_on <= day and (self.paid_on is None or self.paid_on > day)


@dataclass(frozen=True, slots=True)
class Standing:
    """A customer's payment standing as the last pass left it."""

    standing: str = CURRENT
    episode: str | None = None
    since: date | None = None
    late_barred: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentResult:
    standing: Standing
    changes: tuple[Change, ...]
    notices: tuple[Notice, ...]
    live_key: tuple[str, str, str] | None
    next_check_on: date | None


def standing_on(
    invoices: tuple[Invoice, ...], day: date, policy: Policy
) -> tuple[str, Invoice | None]:
    """The standing on `day` and the oldest unpaid item that decides it."""
    unpaid = [item for item in invoices if item.unpaid_on(day)]
    if not unpaid:
        return CURRENT, None
    oldest = min(unpaid, key=lambda item: (item.requested_on, item.id))
    days = (day - oldest.requested_on).days
    if days >= policy.payment.suspended_after_days:
        return SUSPENDED, oldest
    if days >= policy.payment.late_after_days:
        return LATE, oldest
    return CURRENT, oldest


def _event_days(invoices: tuple[Invoice, ...], policy: Policy) -> list[date]:
    days: set[date] = set()
    for item in invoices:
        days.add(item.requested_on)
        days.add(item.requested_on + timedelta(days=policy.payment.late_after_days))
        days.add(item.requested_on + timedelta(days=policy.payment.suspended_after_days))
        if item.paid_on is not None:
            days.add(item.paid_on)
    return sorted(days)


def evaluate_payment(
    customer_id: str,
    previous: Standing,
    invoices: tuple[Invoice, ...],
    today: date,
    policy: Policy,
) -> PaymentResult:
    """Walk the standing from `previous` to `today`; see the module docstring."""
    current = previous
    changes: list[Change] = []
    days = [day for day in _event_days(invoices, policy) if day < today] + [today]
    for day in days:
        if previous.since is not None and day <= previous.since:
            continue
        standing, oldest = standing_on(invoices, day, policy)
        episode = oldest.id if standing != CURRENT and oldest else None
        if (standing, episode) == (current.standing, current.episode):
            continue
        if standing != current.standing:
            changes.append(Change("payment_standing", current.standing, standing,
                                  _reason(standing, episode), day))
        current = _moved(current, standing, episode, day)
    notices = _notices(customer_id, previous, current, invoices, today, policy)
    live = next((notice.key for notice in notices if notice.family == "payment"), None)
    return PaymentResult(current, tuple(changes), tuple(notices), live,
                         _next_check_on(invoices, today, policy))


def _moved(current: Standing, standing: str, episode: str | None, day: date) -> Standing:
    barred = current.late_barred
    if standing == CURRENT:
        barred = None
    elif standing == LATE and current.standing == SUSPENDED:
        barred = episode  # stepping down from suspension never sends that episode's late
    since = day if standing != current.standing or episode != current.episode else current.since
    return Standing(standing, episode, since, barred)


def _reason(standing: str, episode: str | None) -> str:
    if standing == CURRENT:
        return "paid"
    return f"unpaid_{episode}"


def _notices(
    customer_id: str,
    previous: Standing,
    current: Standing,
    invoices: tuple[Invoice, ...],
    today: date,
    policy: Policy,
) -> list[Notice]:
    horizon = policy.catch_up.horizon_days
    by_id = {item.id: item for item in invoices}
    notices: list[Notice] = []
    item = by_id.get(current.episode or "")
    if current.standing in (LATE, SUSPENDED) and item is not None:
        late = current.standing == LATE
        days = policy.payment.late_after_days if late else policy.payment.suspended_after_days
        on = item.requested_on + timedelta(days=days)
        barred = late and current.late_barred == item.id
        if not barred and within_horizon(on, today, horizon):
            kind = "payment_late" if late else "payment_suspended"
            notices.append(Notice(kind, customer_id, f"{item.id}/{days}", on, {
                "invoice_id": item.id, "requested_on": item.requested_on.isoformat(),
                "days_outstanding": (today - item.requested_on).days,
            }))
    was_behind = previous.standing != CURRENT and previous.episode is not None
    if current.standing == CURRENT and was_behind:
        on = current.since or today
        if within_horizon(on, today, horizon):
            notices.append(Notice("payment_reinstated", customer_id, str(previous.episode), on,
                                  {"invoice_id": previous.episode}))
    return notices


def _next_check_on(invoices: tuple[Invoice, ...], today: date, policy: Policy) -> date | None:
    """The next day the standing may move: a request, a payment, or day 31 / 61 of an item
    still unpaid on that day (a paid item's thresholds wake nobody)."""
    future: list[date] = []
    for item in invoices:
        days = [item.requested_on, item.paid_on] + [
            item.requested_on + timedelta(days=n)
            for n in (policy.payment.late_after_days, policy.payment.suspended_after_days)
            if item.unpaid_on(item.requested_on + timedelta(days=n))]
        future += [day for day in days if day is not None and day > today]
    return min(future) if future else None


def effective_account_state(person_state: str, standing: str) -> str:
    """`suspended` when a person or the payment standing says so; else the person's state."""
    return SUSPENDED if SUSPENDED in (person_state, standing) else person_state
