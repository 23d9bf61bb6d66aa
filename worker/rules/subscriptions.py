"""The subscription term lifecycle (docs/rules.md), on the customer's local dates.

A subscription is walked forward from the state the last pass left, one event at a time,
up to `today`: every status change is recorded with the date it took effect, so a pass
after a gap records what a daily pass would have. The family notices (renewal, grace)
are then read off the final state: only the latest one due is wanted, and none once a
later state has overtaken it.

Events, in date order:

* start date: `pending_start` -> `active`, `subscription_started`.
* AD - 45 / AD - 30 (terms of 12 months or more): `renewal_upcoming`, `ready_for_renewal`.
* a renewal ordered before AD: `renewed`, `renewal_confirmed` (occasion: that AD).
* AD with a renewal ordered on or before it: `active`, AD moved on by years x 12 months.
* AD with auto-renew, or at the end of an extended first term: `active`, AD moved on by
  the term (12 months after an extended term), `auto_renewed` for terms of 12+ months.
* AD with neither: `grace`, with the lapse day AD + 14.
* a renewal ordered in grace or after lapse: `active`, AD counted on from the old AD.
* AD + 14 still in grace: `lapsed`.
* A pending change applies at the AD it was waiting for, where the subscription goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

from worker.config.policy import Policy
from worker.errors import RecordError
from worker.rules.calendar import add_months
from worker.rules.model import Change, Notice, within_horizon

PENDING_START = "pending_start"
ACTIVE = "active"
UPCOMING = "renewal_upcoming"
READY = "ready_for_renewal"
RENEWED = "renewed"
GRACE = "grace"
LAPSED = "lapsed"
BEFORE_AD = (ACTIVE, UPCOMING, READY)
STATUSES = (PENDING_START, ACTIVE, UPCOMING, READY, RENEWED, GRACE, LAPSED)
_FIXED_BUCKETS = {PENDING_START: "not_started", RENEWED: "renewed", GRACE: "expired",
                  LAPSED: "lapsed"}  # whatever the date; the others depend on the AD
_MAX_STEPS = 2_000


@dataclass(frozen=True, slots=True)
class Renewal:
    ordered_on: date
    years: int


@dataclass(frozen=True, slots=True)
class PendingChange:
    term_months: int
    due_ad: date


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """What the worker holds about one subscription between passes.

    `term_months` is the worker's current term (the `current_term_months` column), not
    the term the portal sold: it moves when an extended first term ends or a pending
    change applies, and a re-import of the same file never puts the old one back.
    """

    id: str
    start_date: date
    anniversary_date: date
    anchor_day: int
    term_months: int
    first_term_extended: bool
    auto_renew: bool
    renewal: Renewal | None
    renewal_spent_through: date | None
    pending_change: PendingChange | None
    status: str
    status_since: date | None

    def unspent_renewal(self, today: date) -> Renewal | None:
        """The recorded renewal not yet applied, once its order date has come."""
        renewal = self.renewal
        if renewal is None or renewal.ordered_on > today:
            return None
        if self.renewal_spent_through and renewal.ordered_on <= self.renewal_spent_through:
            return None
        return renewal


@dataclass(frozen=True, slots=True)
class SubscriptionResult:
    state: SubscriptionState
    changes: tuple[Change, ...]
    notices: tuple[Notice, ...]
    live: dict[str, tuple[str, str, str] | None]
    next_check_on: date | None
    bucket: str


def is_long_term(term_months: int, policy: Policy) -> bool:
    return term_months >= policy.renewal.notice_min_term_months


class _Walk:
    """The mutable walk of one evaluation; only `evaluate_subscription` uses it."""

    def __init__(self, state: SubscriptionState, today: date, policy: Policy) -> None:
        self.state = state
        self.today = today
        self.policy = policy
        self.changes: list[Change] = []
        self.notices: list[Notice] = []

    def move(self, to: str, on: date, reason: str) -> None:
        since = self.state.status_since
        effective = max(on, since) if since else on
        if to != self.state.status:
            self.changes.append(Change("status", self.state.status, to, reason, effective))
        self.state = replace(self.state, status=to, status_since=effective)

    def notify(self, kind: str, occasion: date, on: date, **facts: object) -> None:
        if within_horizon(on, self.today, self.policy.catch_up.horizon_days):
            self.notices.append(Notice(kind, self.state.id, occasion.isoformat(), on, dict(facts)))


def evaluate_subscription(
    state: SubscriptionState, today: date, policy: Policy
) -> SubscriptionResult:
    """Walk `state` forward to the customer's local date `today`; see the module docstring."""
    walk = _Walk(state, today, policy)
    for _ in range(_MAX_STEPS):
        if not _step(walk):
            break
    else:
        raise RecordError(f"subscription {state.id}: no stable state after {_MAX_STEPS} steps")
    final = walk.state
    live: dict[str, tuple[str, str, str] | None] = {"renewal": None, "grace": None}
    notices = list(walk.notices)
    for family, notice in (("renewal", _renewal_notice(final, today, policy)),
                           ("grace", _grace_notice(final, today, policy))):
        if notice is not None:
            notices.append(notice)
            live[family] = notice.key
    return SubscriptionResult(
        state=final,
        changes=tuple(walk.changes),
        notices=tuple(notices),
        live=live,
        next_check_on=_next_check_on(final, today, policy),
        bucket=bucket_of(final, today, policy),
    )


def _step(walk: _Walk) -> bool:
    """Apply the earliest event due by `walk.today`; False when none is."""
    status = walk.state.status
    if status == PENDING_START:
        return _start(walk)
    if status in BEFORE_AD:
        return _before_anniversary(walk)
    if status == RENEWED:
        return _renewed(walk)
    if status in (GRACE, LAPSED):
        return _after_anniversary(walk)
    raise RecordError(f"subscription {walk.state.id}: unknown status {status!r}")


def _start(walk: _Walk) -> bool:
    start = walk.state.start_date
    if start > walk.today:
        return False
    walk.move(ACTIVE, start, "started")
    walk.notify("subscription_started", start, start)
    return True


def threshold_status(state: SubscriptionState, day: date, policy: Policy) -> str:
    """The status a running term has on `day` before its AD, by the notice thresholds."""
    if not is_long_term(state.term_months, policy):
        return ACTIVE
    days_left = (state.anniversary_date - day).days
    if days_left <= policy.renewal.window_days_before:
        return READY
    if days_left <= policy.renewal.upcoming_days_before:
        return UPCOMING
    return ACTIVE


def _before_anniversary(walk: _Walk) -> bool:
    state, today, policy = walk.state, walk.today, walk.policy
    ad = state.anniversary_date
    renewal = state.unspent_renewal(today)
    events: list[tuple[date, int, str]] = []
    if renewal is not None and renewal.ordered_on < ad:
        events.append((renewal.ordered_on, 0, "renewal"))
    for status, days in ((UPCOMING, policy.renewal.upcoming_days_before),
                         (READY, policy.renewal.window_days_before)):
        if is_long_term(state.term_months, policy) and _rank(status) > _rank(state.status):
            events.append((ad - timedelta(days=days), 1, status))
    events.append((ad, 2, "anniversary"))
    due = [event for event in events if event[0] <= today]
    if not due:
        return _fall_back_if_moved(walk)
    on, _, what = min(due)
    if what == "renewal" and renewal is not None:
        walk.move(RENEWED, on, "renewal_recorded")
        confirmed_on = walk.state.status_since or on
        _confirm(walk, renewal, confirmed_on)
    elif what == "anniversary":
        _at_anniversary(walk)
    else:
        walk.move(what, on, "renewal_window" if what == READY else "renewal_upcoming")
    return True


def _fall_back_if_moved(walk: _Walk) -> bool:
    """A later AD imported after the thresholds passed puts the status back."""
    expected = threshold_status(walk.state, walk.today, walk.policy)
    if _rank(expected) < _rank(walk.state.status):
        walk.move(expected, walk.today, "anniversary_moved")
        return True
    return False


def _rank(status: str) -> int:
    return BEFORE_AD.index(status)


def _renewed(walk: _Walk) -> bool:
    state = walk.state
    if state.unspent_renewal(walk.today) is None:  # the order was withdrawn
        walk.move(threshold_status(state, walk.today, walk.policy), walk.today, "renewal_withdrawn")
        return True
    if state.anniversary_date > walk.today:
        return False
    _at_anniversary(walk)
    return True


def _at_anniversary(walk: _Walk) -> None:
    state, policy = walk.state, walk.policy
    ad = state.anniversary_date
    renewal = state.unspent_renewal(walk.today)
    if renewal is not None and renewal.ordered_on <= ad:
        if state.status != RENEWED:  # ordered on the AD itself: confirmed now
            _confirm(walk, renewal, ad)
        _go_on_with_renewal(walk, renewal, reason="renewal_applied", on=ad)
    elif state.auto_renew or state.first_term_extended:
        ended_term = state.term_months
        term = _next_term(state, policy)
        _go_on(walk, term, reason="auto_renewed", on=ad)
        if is_long_term(ended_term, policy):
            walk.notify("auto_renewed", ad, ad, anniversary_date=ad.isoformat(),
                        next_anniversary_date=walk.state.anniversary_date.isoformat(),
                        term_months=walk.state.term_months)  # after any pending change
    else:
        walk.move(GRACE, ad, "anniversary_passed")  # the grace family notice follows


def _after_anniversary(walk: _Walk) -> bool:
    state, today, policy = walk.state, walk.today, walk.policy
    ad = state.anniversary_date
    if ad > today:  # a later AD was imported: the term runs again
        walk.move(threshold_status(state, today, policy), today, "anniversary_moved")
        return True
    renewal = state.unspent_renewal(today)
    lapse_day = ad + timedelta(days=policy.grace.lapse_after_days)
    events: list[tuple[date, int, str]] = []
    if renewal is not None:
        events.append((max(renewal.ordered_on, state.status_since or ad), 0, "renewal"))
    if state.status == GRACE:
        events.append((lapse_day, 1, "lapse"))
    due = [event for event in events if event[0] <= today]
    if not due:
        return False
    on, _, what = min(due)
    if what == "lapse":
        walk.move(LAPSED, lapse_day, "grace_over")
        return True
    assert renewal is not None
    _confirm(walk, renewal, on)
    _go_on_with_renewal(walk, renewal, reason="renewed_late", on=on)
    return True


def _confirm(walk: _Walk, renewal: Renewal, on: date) -> None:
    """`renewal_confirmed` for the AD the renewal applies to, naming the AD it leads to."""
    state = walk.state
    ad = state.anniversary_date
    next_ad = add_months(ad, renewal.years * 12, state.anchor_day)
    walk.notify("renewal_confirmed", ad, on, anniversary_date=ad.isoformat(),
                next_anniversary_date=next_ad.isoformat(), years=renewal.years,
                ordered_on=renewal.ordered_on.isoformat())


def _next_term(state: SubscriptionState, policy: Policy) -> int:
    if state.first_term_extended:
        return policy.renewal.after_extended_term_months
    return state.term_months


def _go_on_with_renewal(walk: _Walk, renewal: Renewal, *, reason: str, on: date) -> None:
    state = walk.state
    walk.state = replace(state, renewal_spent_through=renewal.ordered_on)
    _go_on(walk, renewal.years * 12, reason=reason, on=on,
           regular_term=_next_term(state, walk.policy))


def _go_on(
    walk: _Walk, term: int, *, reason: str, on: date, regular_term: int | None = None
) -> None:
    """The term ending at the held AD goes on: move the AD, apply a waiting change.

    `term` is the length of the term now starting; `regular_term` the length of the terms
    after it (the same unless a renewal ordered a number of years).
    """
    state = walk.state
    old_ad = state.anniversary_date
    follow = term if regular_term is None else regular_term
    change = state.pending_change
    due = change is not None and change.due_ad <= old_ad
    if change is not None and due:
        follow = change.term_months
        if regular_term is None:
            term = change.term_months
    walk.state = replace(
        state,
        anniversary_date=add_months(old_ad, term, state.anchor_day),
        term_months=follow,
        first_term_extended=False,
        pending_change=None if due else change,
    )
    walk.move(ACTIVE, on, reason)
    if change is not None and due and change.term_months != state.term_months:
        walk.notify("term_change_applied", old_ad, on, anniversary_date=old_ad.isoformat(),
                    from_term_months=state.term_months, to_term_months=change.term_months)


def _renewal_notice(state: SubscriptionState, today: date, policy: Policy) -> Notice | None:
    """The latest renewal notice due: none once renewed, in grace, or for short terms."""
    if state.status not in BEFORE_AD or not is_long_term(state.term_months, policy):
        return None
    ad = state.anniversary_date
    if today >= ad:
        return None
    for days, kind in reversed(policy.renewal.notice_offsets()):
        on = ad - timedelta(days=days)
        if on <= today:
            if not within_horizon(on, today, policy.catch_up.horizon_days):
                return None
            return Notice(kind, state.id, f"{ad.isoformat()}/{days}", on,
                          {"anniversary_date": ad.isoformat(), "days_before": days})
    return None


def _grace_notice(state: SubscriptionState, today: date, policy: Policy) -> Notice | None:
    """The latest grace notice due for the AD held: expired, ending, or lapsed."""
    ad = state.anniversary_date
    lapse_day = ad + timedelta(days=policy.grace.lapse_after_days)
    if state.status == LAPSED:
        kind, on = "subscription_lapsed", lapse_day
    elif state.status == GRACE:
        ending = lapse_day - timedelta(days=policy.grace.ending_notice_days_before_lapse)
        kind, on = ("grace_ending", ending) if today >= ending else ("subscription_expired", ad)
    else:
        return None
    if not within_horizon(on, today, policy.catch_up.horizon_days):
        return None
    facts = {"anniversary_date": ad.isoformat(), "lapse_date": lapse_day.isoformat()}
    return Notice(kind, state.id, ad.isoformat(), on, facts)


def _next_check_on(state: SubscriptionState, today: date, policy: Policy) -> date | None:
    """The first local date after `today` on which this subscription may change."""
    ad = state.anniversary_date
    days = [state.start_date, ad]
    if is_long_term(state.term_months, policy):
        days.append(ad - timedelta(days=policy.buckets.to_renew_within_days))
        days += [ad - timedelta(days=offset) for offset, _ in policy.renewal.notice_offsets()]
    lapse_day = ad + timedelta(days=policy.grace.lapse_after_days)
    days += [lapse_day, lapse_day - timedelta(days=policy.grace.ending_notice_days_before_lapse)]
    if state.renewal is not None:
        days.append(state.renewal.ordered_on)
    future = [day for day in days if day > today]
    return min(future) if future else None


def bucket_of(state: SubscriptionState, today: date, policy: Policy) -> str:
    """The dashboard bucket (the portals' colours, docs/rules.md) of a subscription on `today`."""
    if state.status in _FIXED_BUCKETS:
        return _FIXED_BUCKETS[state.status]
    days_left = (state.anniversary_date - today).days
    if is_long_term(state.term_months, policy) and days_left <= policy.buckets.to_renew_within_days:
        return "to_renew"
    return "ok"
