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

from worker.calendar import add_months, anchor_day, days_in_month, local_date, local_midnight
from worker.policy import Policy, load_policy
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


@FAST
@given(month=days, anchor=anchors, term=terms, count=st.integers(min_value=0, max_value=40))
def test_anniversaries_never_drift_whatever_the_number_of_terms(
    month: date, anchor: int, term: int, count: int
) -> None:
    """k terms at once equal k terms one by one; the day is the anchor clamped to the month."""
    first = add_months(month, 0, anchor)
    one_by_one = first
    for _ in range(count):
        one_by_one = add_months(one_by_one, term, anchor)
    at_once = add_months(first, count * term, anchor)
    assert at_once == one_by_one
    assert min(anchor, days_in_month(at_once.year, at_once.month)) == at_once.day


@FAST
@given(start=days, gap=st.integers(min_value=1, max_value=4 * 366))
def test_the_anchor_day_gives_back_the_first_anniversary(start: date, gap: int) -> None:
    """The anchor chosen from (start, first AD) reproduces that first AD exactly."""
    first_ad = start + timedelta(days=gap)
    assert first_ad == add_months(first_ad, 0, anchor_day(start, first_ad))


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
    """Catch-up records what daily passes would: same final state, same dated changes."""
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
    """Missed passes are caught up: irregular passes end where one pass ends."""
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
    """Re-running a day is harmless: no change, no new notice, the same state and live keys."""
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
    """A pass may sleep until next_check_on: no status, AD or bucket moves before it."""
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
    """Catch-up sends the latest only; occasions lie between T - 30 days and T."""
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
    """Monthly terms renew silently (DOMAIN.md: notices concern terms of 12 months or more)."""
    passes = data.draw(pass_days(state), label="passes")
    for result in walk(state, passes):
        assert "to_renew" != result.bucket
        assert [] == [n.kind for n in result.notices
                      if n.family == "renewal" or n.kind == "auto_renewed"]


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
    """Every move is recorded with its own date, however often the passes run."""
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
    """Re-running a day: the same standing, no move, nothing new to send."""
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
    """0-30 current, 31-60 late, 61 and more suspended (the request day is day 0)."""
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
    """A customer may be left alone until next_check_on."""
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
    """The instant a check is scheduled for belongs to the date, and the one before doesn't."""
    midnight = local_midnight(day, zone)
    assert day == local_date(midnight, zone)
    assert day - DAY == local_date(midnight - timedelta(microseconds=1), zone)


@FAST
@given(now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                        timezones=st.just(UTC)), zone=zones)
def test_the_digest_is_due_only_from_eight_local_and_is_next_due_at_eight(
    now: datetime, zone: ZoneInfo
) -> None:
    """Due on the local date once its 08:00 has passed; next due at a later 08:00."""
    timing = digest_timing(now, zone, POLICY)
    local = now.astimezone(zone)
    assert timing.next_at > now
    assert (timing.local_date is not None) == (local.time() >= time(8, 0))
    assert timing.local_date in (None, local.date())
    assert time(8, 0) == timing.next_at.astimezone(zone).time()


def test_the_property_policy_is_the_default_policy(policy: Policy) -> None:
    """The module-level policy used by the properties is the session's default one."""
    assert policy == POLICY
