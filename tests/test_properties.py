"""Invariants of the date rules, checked on generated data (Hypothesis).

* anniversaries never drift, whatever the anchor and the number of terms;
* a second pass on the same day changes nothing;
* one pass after a gap reaches the state daily passes reach, recording the same changes;
* between a pass and the next check it asks for, nothing moves;
* local midnight and the digest hour land where the zone's wall clock says.
"""


from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.config.policy import load_policy
from worker.rules.calendar import add_months, anchor_day, local_midnight
from worker.rules.digest import digest_timing
from worker.rules.payments import Invoice, PaymentResult, Standing, evaluate_payment
from worker.rules.subscriptions import (
    PendingChange,
    Renewal,
    SubscriptionResult,
    SubscriptionState,
    evaluate_subscription,
)

POLICY = load_policy()
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
WALKS = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])

DAY = timedelta(days=1)
days = st.dates(min_value=date(2023, 1, 1), max_value=date(2028, 12, 31))
anchors = st.integers(min_value=1, max_value=31)
terms = st.integers(min_value=1, max_value=36)
ZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Pacific/Auckland", "America/Santiago",
         "America/Havana", "Asia/Beirut", "America/Sao_Paulo", "Australia/Lord_Howe",
         "Asia/Kolkata", "Pacific/Chatham"]
zones = st.sampled_from(ZONES).map(ZoneInfo)


# Anniversaries ---------------------------------------------------------------------------
#
# The oracle is a reference written here, month by month and by trial, sharing no code
# with worker.rules.calendar (no calendar.monthrange, no year*12+month index).


def last_day(year: int, month: int) -> int:
    """The month's last day, found by trying 31, 30, 29, 28."""
    for day in (31, 30, 29):
        try:
            date(year, month, day)
        except ValueError:
            continue
        return day
    return 28


def naive_add_months(day: date, months: int, anchor: int) -> date:
    """Step the (year, month) pair one month at a time, then put the anchor day on it,
    clamped to the month's end."""
    year, month = day.year, day.month
    for _ in range(abs(months)):
        month += 1 if months > 0 else -1
        if month == 13:
            year, month = year + 1, 1
        elif month == 0:
            year, month = year - 1, 12
    return date(year, month, min(anchor, last_day(year, month)))


@FAST
@given(day=days, months=st.integers(min_value=-60, max_value=480), anchor=anchors)
def test_adding_months_agrees_with_counting_them_one_by_one(
    day: date, months: int, anchor: int
) -> None:
    """Catches: the month count dropped or off by one, the year carry wrong, the clamp
    taken with max() or to a fixed 28/30, the day taken from `day` instead of the anchor."""
    assert naive_add_months(day, months, anchor) == add_months(day, months, anchor)


@FAST
@given(month=days, anchor=anchors, term=terms, count=st.integers(min_value=0, max_value=40))
def test_anniversaries_never_drift_whatever_the_number_of_terms(
    month: date, anchor: int, term: int, count: int
) -> None:
    """k terms one by one land where k x term months at once land, and where the
    reference puts them: a clamp (31 -> 28 February) never sticks to later ones.
    Catches: a new AD computed from the clamped day instead of the anchor."""
    first = add_months(month, 0, anchor)
    one_by_one = first
    for _ in range(count):
        one_by_one = add_months(one_by_one, term, anchor)
    assert naive_add_months(month, count * term, anchor) == one_by_one
    assert min(anchor, last_day(one_by_one.year, one_by_one.month)) == one_by_one.day


@FAST
@given(start=days, term=terms, count=st.integers(min_value=0, max_value=12))
def test_an_anniversary_a_whole_term_after_the_start_anchors_on_the_start_day(
    start: date, term: int, count: int
) -> None:
    """Start 31 January, AD 28 February: later ADs go back to the 31st (docs/rules.md).
    Catches: the anchor taken from a clamped first AD, or the month-end test dropped."""
    first_ad = naive_add_months(start, term, start.day)
    anchor = anchor_day(start, first_ad)
    assert start.day == anchor
    later = naive_add_months(start, term * (count + 1), start.day)
    assert later == add_months(first_ad, term * count, anchor)


@FAST
@given(start=days, gap=st.integers(min_value=1, max_value=4 * 366))
def test_the_anchor_day_gives_back_the_first_anniversary(start: date, gap: int) -> None:
    """Whatever AD was imported, its own month on the anchor is that AD again.
    Catches: an anchor above the day of an AD that is not a month end."""
    first_ad = start + timedelta(days=gap)
    anchor = anchor_day(start, first_ad)
    assert first_ad.day == min(anchor, last_day(first_ad.year, first_ad.month))
    if first_ad.day < last_day(first_ad.year, first_ad.month):
        assert first_ad.day == anchor


# Subscriptions ---------------------------------------------------------------------------


@st.composite
def subscriptions(
    draw: st.DrawFn, term_months: st.SearchStrategy[int] = terms, changes: bool = True
) -> SubscriptionState:
    """A subscription as imported: random start, AD (matching a term or chosen), options."""
    start = draw(st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)))
    term = draw(term_months)
    chosen = start + timedelta(days=draw(st.integers(min_value=1, max_value=3 * 366)))
    ad = draw(st.sampled_from([add_months(start, term, start.day), chosen]))
    renewal = draw(st.none() | st.builds(
        Renewal,
        ordered_on=st.dates(min_value=start - 30 * DAY, max_value=start + 3 * 366 * DAY),
        years=st.integers(min_value=1, max_value=3)))
    change = draw(st.none() | terms.map(lambda months: PendingChange(months, ad))) if changes \
        else None
    return SubscriptionState(
        id="s1", start_date=start, anniversary_date=ad, anchor_day=anchor_day(start, ad),
        term_months=term, first_term_extended=term > 12, auto_renew=draw(st.booleans()),
        renewal=renewal, renewal_spent_through=None, pending_change=change,
        status="pending_start", status_since=None,
    )


def first_pass_day(state: SubscriptionState, lead: int) -> date:
    return state.start_date - timedelta(days=lead)


leads = st.integers(min_value=0, max_value=60)
horizons = st.integers(min_value=0, max_value=3 * 366)


def walk(state: SubscriptionState, passes: list[date]) -> list[SubscriptionResult]:
    """Passes on the given days, each from the state the previous one left."""
    results = []
    for today in passes:
        result = evaluate_subscription(state, today, POLICY)
        results.append(result)
        state = result.state
    return results


def status_moves(results: list[SubscriptionResult]) -> list[tuple[str | None, str, date]]:
    return [(c.from_value, c.to_value, c.effective_on) for r in results for c in r.changes]


@WALKS
@given(state=subscriptions(), lead=leads, horizon=horizons)
def test_daily_passes_and_one_pass_at_the_end_reach_the_same_subscription(
    state: SubscriptionState, lead: int, horizon: int
) -> None:
    """Catch-up records what daily passes would: same final state, same dated changes.
    Metamorphic. Catches: a change dated on the pass day instead of the day it took effect,
    a catch-up that stops after one step."""
    first = first_pass_day(state, lead)
    end = first + timedelta(days=horizon)
    daily = walk(state, [first + timedelta(days=n) for n in range(horizon + 1)])
    [once] = walk(state, [end])
    assert daily[-1].state == once.state
    assert status_moves(daily) == status_moves([once])
    assert (daily[-1].live, daily[-1].bucket) == (once.live, once.bucket)


@WALKS
@given(state=subscriptions(), lead=leads,
       gaps=st.lists(st.integers(min_value=1, max_value=45), min_size=1, max_size=30))
def test_passes_at_any_intervals_reach_the_state_of_one_pass(
    state: SubscriptionState, lead: int, gaps: list[int]
) -> None:
    """Missed passes are caught up: irregular passes end where one pass ends.
    Metamorphic. Catches: a walk that depends on where the previous pass stopped."""
    passes = [first_pass_day(state, lead)]
    for gap in gaps:
        passes.append(passes[-1] + timedelta(days=gap))
    irregular = walk(state, passes)
    [once] = walk(state, [passes[-1]])
    assert irregular[-1].state == once.state
    assert status_moves(irregular) == status_moves([once])


@FAST
@given(state=subscriptions(), lead=leads, horizon=horizons)
def test_a_second_pass_on_the_same_day_changes_nothing(
    state: SubscriptionState, lead: int, horizon: int
) -> None:
    """Re-running a day is harmless: no change, no new notice, the same state and live keys.
    Metamorphic. Catches: a threshold judged with <= on one side and < on the other."""
    today = first_pass_day(state, lead) + timedelta(days=horizon)
    first, second = walk(state, [today, today])
    assert () == second.changes
    assert first.state == second.state
    assert {n.key for n in second.notices} <= {n.key for n in first.notices}
    assert (first.live, first.bucket) == (second.live, second.bucket)


@FAST
@given(state=subscriptions(), lead=leads, horizon=horizons, data=st.data())
def test_nothing_moves_before_the_next_check_a_pass_asks_for(
    state: SubscriptionState, lead: int, horizon: int, data: st.DataObject
) -> None:
    """A pass may sleep until next_check_on: no status, AD or bucket moves before it.
    Catches: a next check one day late (a threshold missed for a day)."""
    today = first_pass_day(state, lead) + timedelta(days=horizon)
    result = evaluate_subscription(state, today, POLICY)
    if result.next_check_on is None:
        later = today + timedelta(days=data.draw(st.integers(1, 3 * 366), label="later"))
    else:
        assert today < result.next_check_on
        span = (result.next_check_on - today).days - 1
        if span == 0:
            return
        later = today + timedelta(days=data.draw(st.integers(1, span), label="later"))
    quiet = evaluate_subscription(result.state, later, POLICY)
    assert ((), result.state, result.bucket) == (quiet.changes, quiet.state, quiet.bucket)



@st.composite
def pass_days(draw: st.DrawFn, state: SubscriptionState) -> list[date]:
    """Pass days from shortly before the start, at irregular intervals up to 45 days."""
    days_ = [first_pass_day(state, draw(leads))]
    for gap in draw(st.lists(st.integers(min_value=1, max_value=45), min_size=1, max_size=30)):
        days_.append(days_[-1] + timedelta(days=gap))
    return days_


@FAST
@given(data=st.data(), state=subscriptions())
def test_a_pass_creates_at_most_one_notice_per_family_and_none_beyond_the_horizon(
    data: st.DataObject, state: SubscriptionState
) -> None:
    """Catch-up sends the latest only; occasions lie between T - 30 days and T.
    Oracle: the horizon of the policy. Catches: every missed notice of a family sent."""
    passes = data.draw(pass_days(state), label="passes")
    for today, result in zip(passes, walk(state, passes), strict=True):
        families = [n.family for n in result.notices if n.family is not None]
        assert sorted(set(families)) == sorted(families)
        for notice in result.notices:
            assert 0 <= (today - notice.occasion_date).days <= POLICY.catch_up.horizon_days
            if notice.family is not None:
                assert notice.key == result.live[notice.family]


@FAST
@given(data=st.data(), state=subscriptions(st.integers(min_value=1, max_value=11), False))
def test_short_terms_never_get_renewal_notices_auto_renewed_or_to_renew(
    data: st.DataObject, state: SubscriptionState
) -> None:
    """Monthly terms renew silently (docs/rules.md: notices concern terms of 12 months or more).
    Catches: the long-term test written as > 12 or >= 1."""
    passes = data.draw(pass_days(state), label="passes")
    for result in walk(state, passes):
        assert "to_renew" != result.bucket
        assert [] == [n.kind for n in result.notices
                      if n.family == "renewal" or n.kind == "auto_renewed"]


@FAST
@given(start=st.dates(min_value=date(2024, 1, 1), max_value=date(2027, 12, 31)),
       term=terms, horizon=st.integers(min_value=0, max_value=4 * 366))
def test_an_auto_renewing_subscription_holds_the_next_anniversary_counted_from_its_start(
    start: date, term: int, horizon: int
) -> None:
    """Oracle: the reference above, counting whole terms from the start date on its own
    day. After a pass on day D the held AD is the first of start + n terms after D, and
    one auto-renewal is recorded per anniversary reached. Catches: the term dropped or
    doubled when the AD moves, the anchor lost, a renewal on the day after the AD."""
    first_ad = naive_add_months(start, term, start.day)
    state = SubscriptionState(
        id="s1", start_date=start, anniversary_date=first_ad,
        anchor_day=anchor_day(start, first_ad), term_months=term,
        first_term_extended=False, auto_renew=True, renewal=None,
        renewal_spent_through=None, pending_change=None, status="pending_start",
        status_since=None,
    )
    today = start + timedelta(days=horizon)
    [result] = walk(state, [today])
    reached = 1
    while naive_add_months(start, term * reached, start.day) <= today:
        reached += 1
    assert naive_add_months(start, term * reached, start.day) == result.state.anniversary_date
    assert result.state.status not in ("grace", "lapsed")


# Payments --------------------------------------------------------------------------------

REQUESTS_FROM = date(2026, 1, 1)


@st.composite
def invoice_books(draw: st.DrawFn) -> tuple[Invoice, ...]:
    """One to four requests over a few months, each paid some days later or never."""
    invoices = []
    for number in range(draw(st.integers(min_value=1, max_value=4))):
        requested = REQUESTS_FROM + timedelta(days=draw(st.integers(0, 150)))
        delay = draw(st.none() | st.integers(min_value=0, max_value=120))
        paid = None if delay is None else requested + timedelta(days=delay)
        invoices.append(Invoice(f"pa{number}", requested, paid))
    return tuple(invoices)


def walk_payments(invoices: tuple[Invoice, ...], passes: list[date]) -> list[PaymentResult]:
    results = []
    standing = Standing()
    for today in passes:
        result = evaluate_payment("c1", standing, invoices, today, POLICY)
        results.append(result)
        standing = result.standing
    return results


def standing_moves(results: list[PaymentResult]) -> list[tuple[str | None, str, date]]:
    return [(c.from_value, c.to_value, c.effective_on) for r in results for c in r.changes]


@WALKS
@given(invoices=invoice_books(), horizon=st.integers(min_value=0, max_value=400))
def test_payment_standing_walked_day_by_day_equals_walked_once(
    invoices: tuple[Invoice, ...], horizon: int
) -> None:
    """Every move is recorded with its own date, however often the passes run.
    Metamorphic. Catches: a late move dated on the pass day."""
    first = REQUESTS_FROM - DAY
    daily = walk_payments(invoices, [first + timedelta(days=n) for n in range(horizon + 1)])
    [once] = walk_payments(invoices, [first + timedelta(days=horizon)])
    assert daily[-1].standing == once.standing
    assert standing_moves(daily) == standing_moves([once])


@FAST
@given(invoices=invoice_books(), horizon=st.integers(min_value=0, max_value=400))
def test_a_second_payment_pass_on_the_same_day_changes_nothing(
    invoices: tuple[Invoice, ...], horizon: int
) -> None:
    """Re-running a day: the same standing, no move, nothing new to send. Metamorphic."""
    today = REQUESTS_FROM + timedelta(days=horizon)
    first, second = walk_payments(invoices, [today, today])
    assert ((), first.standing) == (second.changes, second.standing)
    assert {n.key for n in second.notices} <= {n.key for n in first.notices}


@FAST
@given(invoices=invoice_books(), today=st.dates(min_value=REQUESTS_FROM,
                                                max_value=date(2026, 12, 31)))
def test_the_standing_follows_the_days_outstanding_of_the_oldest_unpaid_item(
    invoices: tuple[Invoice, ...], today: date
) -> None:
    """0-30 current, 31-60 late, 61 and more suspended (the request day is day 0).
    Oracle: the days outstanding counted here. Catches: the newest item used instead
    of the oldest, a payment on the day itself ignored, 30/31 or 60/61 off by one."""
    unpaid = [i for i in invoices
              if i.requested_on <= today and (i.paid_on is None or i.paid_on > today)]
    outstanding = max(((today - i.requested_on).days for i in unpaid), default=0)
    expected = "current" if outstanding <= 30 else "late" if outstanding <= 60 else "suspended"
    assert expected == walk_payments(invoices, [today])[0].standing.standing



@FAST
@given(invoices=invoice_books(), horizon=st.integers(min_value=0, max_value=400),
       data=st.data())
def test_no_payment_move_happens_before_the_next_check_a_pass_asks_for(
    invoices: tuple[Invoice, ...], horizon: int, data: st.DataObject
) -> None:
    """A customer may be left alone until next_check_on. Catches: a next check late."""
    today = REQUESTS_FROM - DAY + timedelta(days=horizon)
    [result] = walk_payments(invoices, [today])
    limit = 400 if result.next_check_on is None else (result.next_check_on - today).days - 1
    if limit < 1:
        return
    later = today + timedelta(days=data.draw(st.integers(1, limit), label="later"))
    quiet = evaluate_payment("c1", result.standing, invoices, later, POLICY)
    assert ((), result.standing) == (quiet.changes, quiet.standing)


# Zones -----------------------------------------------------------------------------------


@FAST
@given(day=st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31)), zone=zones)
def test_local_midnight_is_the_first_instant_of_its_date_in_every_zone(
    day: date, zone: ZoneInfo
) -> None:
    """The instant a check is scheduled for belongs to the date, and the one before doesn't
    (read with the standard library's own conversion). Catches: fold=1 (the day before
    at a DST change at 00:00), a naive or UTC midnight."""
    midnight = local_midnight(day, zone)
    assert day == midnight.astimezone(zone).date()
    assert day - DAY == (midnight - timedelta(microseconds=1)).astimezone(zone).date()


@FAST
@given(now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                        timezones=st.just(UTC)), zone=zones)
def test_the_digest_is_due_only_from_eight_local_and_is_next_due_at_eight(
    now: datetime, zone: ZoneInfo
) -> None:
    """Due on the local date once its 08:00 has passed; next due at a later 08:00.
    Oracle: the literal hour of docs/rules.md. Catches: the hour read in UTC, > for >=."""
    timing = digest_timing(now, zone, POLICY)
    local = now.astimezone(zone)
    assert timing.next_at > now
    assert (timing.local_date is not None) == (local.time() >= time(8, 0))
    assert timing.local_date in (None, local.date())
    assert time(8, 0) == timing.next_at.astimezone(zone).time()
