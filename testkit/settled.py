"""The settled portfolio of the benchmarks (`testkit.portfolios.Plan`), bulk-inserted.

Every row is in the state a daily pass the day before the bench moment left it: the
rules themselves (`evaluate_subscription`, `evaluate_payment`, `evaluate_invitation`,
`digest_timing`) are run on each generated record at that earlier moment, and their
status, bucket, standing, next check and notices (stored as already sent) are what is
written. Identical subscription states are evaluated once (the rule is pure).

Due records: exactly `Plan.due` records have their next check on the bench day, the same
number whatever the portfolio's size. Background records are drawn from a realistic mix
(mostly active yearly terms, some monthly, renewed, in grace, lapsed, not started) and
redrawn when the rule says they would also be due on the bench day; on a real portfolio
about 1.4 % of subscriptions are due on a given day, here only the planned ones are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from testkit.people import (
    History,
    admin_rows,
    customer_view,
    manager_of,
    manager_rows,
    reseller_view,
)
from testkit.portfolios import (
    CHUNK,
    PRODUCTS,
    Plan,
    Row,
    Zone,
    customer_id,
    insert_rows,
    reseller_id,
    subscription_id,
    zones,
)
from worker.config.policy import Policy
from worker.db.engine import upgrade
from worker.db.schema import (
    Customer,
    Notification,
    PurchaseAuthorization,
    Reseller,
    Subscription,
)
from worker.passes.evaluate import FAR_FUTURE
from worker.rules.calendar import add_months, anchor_day, local_midnight
from worker.rules.digest import digest_timing
from worker.rules.invitations import Invitation, evaluate_invitation
from worker.rules.model import Notice
from worker.rules.payments import Invoice, Standing, evaluate_payment
from worker.rules.subscriptions import (
    PENDING_START,
    Renewal,
    SubscriptionResult,
    SubscriptionState,
    evaluate_subscription,
)

DUE_OFFSETS = (45, 30, 0)  # days from the bench day to the AD of a due subscription


@dataclass
class Portfolio:
    """What the customer pass hands to the subscription pass, and row counts."""

    customer_zone: list[int] = field(default_factory=list)
    customer_reseller: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


# --- resellers -----------------------------------------------------------------------


def reseller_rows(plan: Plan, policy: Policy) -> list[Row]:
    """Resellers whose digest of the previous day went out: the next one is due at 08:00."""
    rows = []
    for index in range(plan.resellers):
        view = reseller_view(index)
        timing = digest_timing(plan.settled_at, ZoneInfo(view.timezone), policy)
        rows.append({
            "id": view.id, "name": view.name, "email": view.email,
            "sender_name": view.name, "reply_to": None, "locale": view.locale,
            "timezone": view.timezone, "account_managers": manager_rows(index),
            "next_digest_at": timing.next_at,
        })
    return rows


# --- customers -----------------------------------------------------------------------


def _invoices(rng: random.Random, cid: str, zone: Zone, due: bool) -> list[Invoice]:
    """Paid history for some; an unpaid item for a few; day 31 on the bench day if due."""
    items: list[Invoice] = []
    if due:
        return [Invoice(f"{cid}-PA0", zone.bench_on - timedelta(days=31), None)]
    if rng.random() < 0.3:
        asked = zone.settled_on - timedelta(days=rng.randint(40, 700))
        items.append(Invoice(f"{cid}-PA0", asked, asked + timedelta(days=rng.randint(0, 20))))
    if rng.random() < 0.05:
        asked = zone.settled_on - timedelta(days=rng.randint(0, 29))
        items.append(Invoice(f"{cid}-PA1", asked, None))
    elif rng.random() < 0.01:  # already late, long before the bench day
        asked = zone.settled_on - timedelta(days=rng.randint(32, 58))
        items.append(Invoice(f"{cid}-PA1", asked, None))
    return items


def _invitation(rng: random.Random, zone: Zone) -> Invitation:
    sent = local_midnight(zone.settled_on - timedelta(days=rng.randint(40, 900)), zone.zone)
    status = "pending" if rng.random() < 0.02 else "accepted"
    return Invitation(status, sent + timedelta(hours=10))


def _settle_customer(
    cid: str, invoices: list[Invoice], invitation: Invitation, zone: Zone, policy: Policy
) -> tuple[Standing, list[Notice], datetime]:
    payment = evaluate_payment(cid, Standing(), tuple(invoices), zone.settled_on, policy)
    invited = evaluate_invitation(cid, invitation, zone.settled_on, zone.zone, policy)
    checks = [d for d in (payment.next_check_on, invited.next_check_on) if d is not None]
    check_at = local_midnight(min(checks), zone.zone) if checks else FAR_FUTURE
    notices = list(payment.notices) + ([invited.notice] if invited.notice else [])
    return payment.standing, notices, check_at


def _draw_customer(
    rng: random.Random, cid: str, zone: Zone, plan: Plan, policy: Policy, *, due: bool
) -> tuple[list[Invoice], Invitation, tuple[Standing, list[Notice], datetime]]:
    """A customer and its settled state; due on the bench day exactly when planned.

    Redrawn when not: the payment rule also wakes a customer on day 31 and 61 of an
    invoice already paid (payments._next_check_on counts every item's event days)."""
    while True:
        items, invitation = _invoices(rng, cid, zone, due), _invitation(rng, zone)
        settled = _settle_customer(cid, items, invitation, zone, policy)
        if (settled[2] <= plan.moment) == due:
            return items, invitation, settled
        if due:
            raise AssertionError(f"planned due customer {cid} is not due")


def customer_rows(
    plan: Plan, policy: Policy, portfolio: Portfolio, history: History
) -> Iterator[tuple[list[Row], list[Row]]]:
    """(customers, purchase authorizations) in chunks; fills `portfolio` on the way."""
    rng = random.Random(plan.seed)
    all_zones = zones(plan)
    due = set(rng.sample(range(plan.customers), plan.due_customers))
    customers: list[Row] = []
    invoices: list[Row] = []
    for index in range(plan.customers):
        cid, reseller, zone_index = customer_id(index), index % plan.resellers, rng.randrange(8)
        zone = all_zones[zone_index]
        portfolio.customer_zone.append(zone_index)
        portfolio.customer_reseller.append(reseller)
        items, invitation, (standing, notices, check_at) = _draw_customer(
            rng, cid, zone, plan, policy, due=index in due)
        for notice in notices:
            history.add(notice, cid, customer_view(index, reseller, zone), reseller)
        customers.append(_customer_row(index, reseller=reseller, zone=zone, invitation=invitation,
                                       standing=standing, check_at=check_at))
        invoices += [{"id": i.id, "customer_id": cid, "requested_on": i.requested_on,
                      "paid_on": i.paid_on} for i in items]
        if len(customers) == CHUNK:
            yield customers, invoices
            customers, invoices = [], []
    yield customers, invoices


def _customer_row(
    index: int, *, reseller: int, zone: Zone, invitation: Invitation, standing: Standing,
    check_at: datetime,
) -> Row:
    return {
        "id": customer_id(index), "reseller_id": reseller_id(reseller),
        "name": f"Customer {index}", "segment": ("commercial", "education", "government")[
            index % 3], "locale": "fr" if index % 2 else "en", "timezone": zone.zone.key,
        "country": "FR", "managed_by": manager_of(index, reseller), "admins": admin_rows(index),
        "account_state": "suspended" if index % 997 == 0 else "active",
        "invitation_status": invitation.status, "invitation_sent_at": invitation.sent_at,
        "payment_standing": standing.standing, "payment_episode": standing.episode,
        "payment_since": standing.since, "late_notice_barred": standing.late_barred,
        "next_check_at": check_at, "error": None,
    }


# --- subscriptions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Terms:
    """The facts of one generated subscription (what an import would have written)."""

    start: date
    anniversary: date
    term_months: int
    auto_renew: bool
    renewal: Renewal | None = None

    def state(self) -> SubscriptionState:
        return SubscriptionState(
            id="bench", start_date=self.start, anniversary_date=self.anniversary,
            anchor_day=anchor_day(self.start, self.anniversary), term_months=self.term_months,
            first_term_extended=False, auto_renew=self.auto_renew, renewal=self.renewal,
            renewal_spent_through=None, pending_change=None, status=PENDING_START,
            status_since=None,
        )


def _term(rng: random.Random) -> int:
    draw = rng.random()
    return 1 if draw < 0.10 else 36 if draw < 0.15 else 12


def _running(rng: random.Random, today: date, term: int, auto: bool, within: int) -> _Terms:
    """A term running today, its AD within `within` days, started 1 to 4 years ago."""
    anniversary = today + timedelta(days=rng.randint(1, within))
    months_ago = term * rng.randint(1, 4) if term >= 12 else rng.randint(1, 48)
    return _Terms(add_months(anniversary, -months_ago, anniversary.day), anniversary,
                  term, auto)


def _background(rng: random.Random, today: date) -> _Terms:
    """One subscription of the usual mix, as the import described it."""
    draw, term, auto = rng.random(), _term(rng), rng.random() < 0.6
    if draw < 0.01:  # not started yet
        start = today + timedelta(days=rng.randint(2, 60))
        return _Terms(start, add_months(start, 12, start.day), 12, auto)
    if draw < 0.05:  # in grace or lapsed: no renewal, no auto-renew
        anniversary = today - timedelta(days=rng.randint(0, 120))
        return _Terms(add_months(anniversary, -12, anniversary.day), anniversary, 12, False)
    if draw < 0.07:  # a renewal already ordered for the coming AD
        running = _running(rng, today, 12, auto, within=30)
        ordered = today - timedelta(days=rng.randint(0, 20))
        return _Terms(running.start, running.anniversary, 12, auto, Renewal(ordered, 1))
    return _running(rng, today, term, auto, within=30 * term)


def _due(rng: random.Random, bench_on: date, number: int) -> _Terms:
    anniversary = bench_on + timedelta(days=DUE_OFFSETS[number % len(DUE_OFFSETS)])
    years_ago = rng.randint(1, 4)
    return _Terms(add_months(anniversary, -12 * years_ago, anniversary.day), anniversary, 12,
                  number % 2 == 0)


class Settler:
    """`evaluate_subscription` at the previous pass, once per distinct state."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.cache: dict[tuple[_Terms, date], SubscriptionResult] = {}

    def settle(self, terms: _Terms, today: date) -> SubscriptionResult:
        key = (terms, today)
        result = self.cache.get(key)
        if result is None:
            result = evaluate_subscription(terms.state(), today, self.policy)
            self.cache[key] = result
        return result


def _draw(
    rng: random.Random, settler: Settler, zone: Zone, due_number: int | None
) -> tuple[_Terms, SubscriptionResult]:
    """A subscription and its settled state; due on the bench day exactly when planned."""
    while True:
        if due_number is not None:
            terms = _due(rng, zone.bench_on, due_number)
        else:
            terms = _background(rng, zone.settled_on)
        result = settler.settle(terms, zone.settled_on)
        if (result.next_check_on == zone.bench_on) == (due_number is not None):
            return terms, result
        if due_number is not None:
            raise AssertionError(f"planned due subscription is not due: {terms}")


def subscription_rows(
    plan: Plan, policy: Policy, portfolio: Portfolio, history: History
) -> Iterator[list[Row]]:
    rng = random.Random(plan.seed + 1)
    all_zones, settler = zones(plan), Settler(policy)
    due = {index: number for number, index in
           enumerate(rng.sample(range(plan.subscriptions), plan.due_subscriptions))}
    rows: list[Row] = []
    for index in range(plan.subscriptions):
        owner = rng.randrange(plan.customers)
        reseller = portfolio.customer_reseller[owner]
        zone = all_zones[portfolio.customer_zone[owner]]
        terms, result = _draw(rng, settler, zone, due.get(index))
        sid = subscription_id(index)
        for notice in result.notices:
            history.add(notice, sid, customer_view(owner, reseller, zone), reseller)
        rows.append(_subscription_row(sid, owner, reseller=reseller, zone=zone, terms=terms,
                                      result=result))
        if len(rows) == CHUNK:
            yield rows
            rows = []
    yield rows


def _subscription_row(
    sid: str, owner: int, *, reseller: int, zone: Zone, terms: _Terms,
    result: SubscriptionResult,
) -> Row:
    state = result.state
    check = result.next_check_on
    change = state.pending_change
    return {
        "id": sid, "customer_id": customer_id(owner), "reseller_id": reseller_id(reseller),
        "product": PRODUCTS[owner % len(PRODUCTS)], "licences": 1 + owner % 50,
        "start_date": state.start_date, "anniversary_date": state.anniversary_date,
        "anchor_day": state.anchor_day, "term_months": terms.term_months,
        "current_term_months": state.term_months,
        "first_term_extended": state.first_term_extended, "auto_renew": terms.auto_renew,
        "renewal_ordered_on": terms.renewal.ordered_on if terms.renewal else None,
        "renewal_years": terms.renewal.years if terms.renewal else None,
        "renewal_spent_through": state.renewal_spent_through,
        "pending_term_months": change.term_months if change else None,
        "pending_due_ad": change.due_ad if change else None,
        "status": state.status, "status_since": state.status_since, "bucket": result.bucket,
        "next_check_at": local_midnight(check, zone.zone) if check else FAR_FUTURE,
        "error": None,
    }


# --- loading -------------------------------------------------------------------------


def build(engine: Engine, plan: Plan, policy: Policy) -> dict[str, int]:
    """Migrate an empty database and fill it with the settled portfolio; row counts."""
    upgrade(engine)
    portfolio = Portfolio()
    history = History(plan, [reseller_view(i) for i in range(plan.resellers)])
    counts = dict.fromkeys(("resellers", "customers", "purchase_authorizations",
                            "subscriptions", "notifications"), 0)
    with engine.begin() as connection:
        counts["resellers"] = insert_rows(connection, Reseller.__table__,
                                          reseller_rows(plan, policy))
        for customers, invoices in customer_rows(plan, policy, portfolio, history):
            counts["customers"] += insert_rows(connection, Customer.__table__, customers)
            counts["purchase_authorizations"] += insert_rows(
                connection, PurchaseAuthorization.__table__, invoices)
            counts["notifications"] += insert_rows(connection, Notification.__table__,
                                                   history.take())
        for subscriptions in subscription_rows(plan, policy, portfolio, history):
            counts["subscriptions"] += insert_rows(connection, Subscription.__table__,
                                                   subscriptions)
            counts["notifications"] += insert_rows(connection, Notification.__table__,
                                                   history.take())
    return counts
