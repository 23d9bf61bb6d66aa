"""The subscription term lifecycle of docs/rules.md, row by row, on the customer's local dates.

Each table row runs one pass a day from the day before the start, feeding every pass the
state the previous one left, as the worker does; "new notices" are those whose once-key
no earlier pass produced (the database keeps the key unique).
"""


from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.config.policy import Policy
from worker.errors import RecordError
from worker.rules.calendar import anchor_day, local_date
from worker.rules.subscriptions import (
    PendingChange,
    Renewal,
    SubscriptionResult,
    SubscriptionState,
    evaluate_subscription,
)

START = date(2026, 3, 15)
AD = date(2027, 3, 15)
NEXT_AD = date(2028, 3, 15)

Import = Callable[[SubscriptionState], SubscriptionState]
History = dict[date, SubscriptionResult]


def subscription(
    start: date = START,
    ad: date = AD,
    *,
    term: int = 12,
    auto_renew: bool = False,
    extended: bool | None = None,
    renewal: Renewal | None = None,
    change: PendingChange | None = None,
) -> SubscriptionState:
    """A subscription as the import leaves it: never evaluated, anchor from start and AD."""
    return SubscriptionState(
        id="s1", start_date=start, anniversary_date=ad, anchor_day=anchor_day(start, ad),
        term_months=term, first_term_extended=term > 12 if extended is None else extended,
        auto_renew=auto_renew, renewal=renewal, renewal_spent_through=None,
        pending_change=change, status="pending_start", status_since=None,
    )


def daily(
    state: SubscriptionState, until: date, policy: Policy,
    imports: Mapping[date, Import] | None = None,
) -> History:
    """One pass a day from the day before the start up to `until`, imports applied first."""
    history: History = {}
    day = state.start_date - timedelta(days=1)
    while day <= until:
        if imports and day in imports:
            state = imports[day](state)
        history[day] = evaluate_subscription(state, day, policy)
        state = history[day].state
        day += timedelta(days=1)
    return history


def new_kinds(history: History, day: date) -> list[str]:
    """Kinds of the notices first produced on `day` (their once-key unseen before)."""
    seen = {n.key for other, r in history.items() if other < day for n in r.notices}
    return sorted(n.kind for n in history[day].notices if n.key not in seen)


def kinds(result: SubscriptionResult) -> list[str]:
    return sorted(notice.kind for notice in result.notices)


def statuses(result: SubscriptionResult) -> list[tuple[str | None, str, date]]:
    return [(c.from_value, c.to_value, c.effective_on) for c in result.changes]


def days_from_ad(days: int, ad: date = AD) -> date:
    return ad + timedelta(days=days)


RENEWED_BEFORE = Renewal(ordered_on=days_from_ad(-20), years=1)
RENEWED_TWO_YEARS = Renewal(ordered_on=days_from_ad(-20), years=2)
RENEWED_IN_GRACE = Renewal(ordered_on=days_from_ad(5), years=1)
RENEWED_AFTER_LAPSE = Renewal(ordered_on=days_from_ad(20), years=1)
RENEWED_ON_AD = Renewal(ordered_on=AD, years=1)

LIFECYCLE = [
    # (state, day, status, new notices, AD held after the pass, term after the pass)
    pytest.param(subscription(), START - timedelta(days=1), "pending_start", [], AD, 12,
                 id="day-before-start"),
    pytest.param(subscription(), START, "active", ["subscription_started"], AD, 12,
                 id="start-date"),
    pytest.param(subscription(), days_from_ad(-46), "active", [], AD, 12, id="AD-46"),
    pytest.param(subscription(), days_from_ad(-45), "renewal_upcoming", ["renewal_upcoming"],
                 AD, 12, id="AD-45"),
    pytest.param(subscription(auto_renew=True), days_from_ad(-45), "renewal_upcoming",
                 ["renewal_upcoming"], AD, 12, id="AD-45-with-auto-renew"),
    pytest.param(subscription(), days_from_ad(-31), "renewal_upcoming", [], AD, 12,
                 id="AD-31"),
    pytest.param(subscription(), days_from_ad(-30), "ready_for_renewal",
                 ["renewal_window_open"], AD, 12, id="AD-30"),
    pytest.param(subscription(), days_from_ad(-8), "ready_for_renewal", [], AD, 12,
                 id="AD-8"),
    pytest.param(subscription(), days_from_ad(-7), "ready_for_renewal", ["renewal_reminder"],
                 AD, 12, id="AD-7"),
    pytest.param(subscription(), days_from_ad(-2), "ready_for_renewal", [], AD, 12,
                 id="AD-2"),
    pytest.param(subscription(), days_from_ad(-1), "ready_for_renewal", ["renewal_reminder"],
                 AD, 12, id="AD-1"),
    pytest.param(subscription(renewal=RENEWED_BEFORE), days_from_ad(-21), "ready_for_renewal",
                 [], AD, 12, id="day-before-renewal-ordered"),
    pytest.param(subscription(renewal=RENEWED_BEFORE), days_from_ad(-20), "renewed",
                 ["renewal_confirmed"], AD, 12, id="renewal-ordered-before-AD"),
    pytest.param(subscription(renewal=RENEWED_BEFORE), days_from_ad(-1), "renewed", [], AD,
                 12, id="renewed-no-reminder-at-AD-1"),
    pytest.param(subscription(renewal=RENEWED_BEFORE), AD, "active", [], NEXT_AD, 12,
                 id="AD-with-renewal"),
    pytest.param(subscription(renewal=RENEWED_TWO_YEARS), AD, "active", [],
                 date(2029, 3, 15), 12, id="AD-with-two-year-renewal"),
    pytest.param(subscription(renewal=RENEWED_ON_AD), AD, "active", ["renewal_confirmed"],
                 NEXT_AD, 12, id="renewal-ordered-on-AD"),
    pytest.param(subscription(auto_renew=True), AD, "active", ["auto_renewed"], NEXT_AD, 12,
                 id="AD-with-auto-renew"),
    pytest.param(subscription(date(2026, 2, 15), term=13), AD, "active", ["auto_renewed"],
                 NEXT_AD, 12, id="AD-ending-13-month-first-term"),
    pytest.param(subscription(date(2024, 3, 15), term=36), AD, "active", ["auto_renewed"],
                 NEXT_AD, 12, id="AD-ending-36-month-commercial-first-term"),
    pytest.param(subscription(date(2023, 3, 15), term=48), AD, "active", ["auto_renewed"],
                 NEXT_AD, 12, id="AD-ending-48-month-education-first-term"),
    pytest.param(subscription(date(2024, 3, 15), term=36, auto_renew=True), AD, "active",
                 ["auto_renewed"], NEXT_AD, 12, id="AD-ending-extended-term-with-auto-renew"),
    pytest.param(subscription(), AD, "grace", ["subscription_expired"], AD, 12,
                 id="AD-with-neither"),
    pytest.param(subscription(), days_from_ad(10), "grace", [], AD, 12, id="AD+10"),
    pytest.param(subscription(), days_from_ad(11), "grace", ["grace_ending"], AD, 12,
                 id="AD+11"),
    pytest.param(subscription(), days_from_ad(13), "grace", [], AD, 12, id="AD+13"),
    pytest.param(subscription(), days_from_ad(14), "lapsed", ["subscription_lapsed"], AD, 12,
                 id="AD+14"),
    pytest.param(subscription(renewal=RENEWED_IN_GRACE), days_from_ad(4), "grace", [], AD, 12,
                 id="day-before-renewal-in-grace"),
    pytest.param(subscription(renewal=RENEWED_IN_GRACE), days_from_ad(5), "active",
                 ["renewal_confirmed"], NEXT_AD, 12, id="renewal-recorded-in-grace"),
    pytest.param(subscription(renewal=RENEWED_AFTER_LAPSE), days_from_ad(19), "lapsed", [],
                 AD, 12, id="day-before-renewal-after-lapse"),
    pytest.param(subscription(renewal=RENEWED_AFTER_LAPSE), days_from_ad(20), "active",
                 ["renewal_confirmed"], NEXT_AD, 12, id="renewal-recorded-after-lapse"),
]


@pytest.mark.parametrize(("state", "day", "status", "notices", "ad", "term"), LIFECYCLE)
def test_each_lifecycle_row_gives_its_status_and_email_on_its_day(
    state: SubscriptionState, day: date, status: str, notices: list[str], ad: date, term: int,
    policy: Policy,
) -> None:
    """docs/rules.md's lifecycle table, the day before and the day of each threshold."""
    history = daily(state, day, policy)
    final = history[day].state
    assert (status, notices, ad, term) == (
        final.status, new_kinds(history, day), final.anniversary_date, final.term_months)


def test_renewal_notices_name_the_anniversary_and_the_offset_in_their_occasion(
    policy: Policy,
) -> None:
    """Once-key of renewal notices: the AD and the offset (docs/rules.md, Once)."""
    history = daily(subscription(), days_from_ad(-1), policy)
    occasions = {(n.kind, n.occasion, n.occasion_date) for r in history.values()
                 for n in r.notices if n.family == "renewal"}
    expected = {
        ("renewal_upcoming", "2027-03-15/45", days_from_ad(-45)),
        ("renewal_window_open", "2027-03-15/30", days_from_ad(-30)),
        ("renewal_reminder", "2027-03-15/7", days_from_ad(-7)),
        ("renewal_reminder", "2027-03-15/1", days_from_ad(-1)),
    }
    assert expected == occasions


def test_grace_notices_are_keyed_by_the_anniversary_and_name_the_lapse_day(
    policy: Policy,
) -> None:
    """subscription_expired names AD + 14; every grace notice's occasion is the AD."""
    history = daily(subscription(), days_from_ad(14), policy)
    grace = {n.kind: n for r in history.values() for n in r.notices if n.family == "grace"}
    assert ["grace_ending", "subscription_expired", "subscription_lapsed"] == sorted(grace)
    assert {"2027-03-15"} == {n.occasion for n in grace.values()}
    assert "2027-03-29" == grace["subscription_expired"].facts["lapse_date"]
    assert days_from_ad(11) == grace["grace_ending"].occasion_date


def test_subscription_started_is_keyed_by_the_start_date(policy: Policy) -> None:
    """Once-key of subscription_started: the start date."""
    result = evaluate_subscription(subscription(), START, policy)
    assert [("subscription_started", "s1", "2026-03-15")] == [n.key for n in result.notices]


def test_renewal_confirmed_and_auto_renewed_are_keyed_by_the_anniversary_they_close(
    policy: Policy,
) -> None:
    """The occasion of auto_renewed and renewal_confirmed is the AD (docs/rules.md, Once)."""
    renewed = daily(subscription(renewal=RENEWED_BEFORE), AD, policy)
    auto = daily(subscription(auto_renew=True), AD, policy)
    confirmed = [n.key for n in renewed[days_from_ad(-20)].notices
                 if n.kind == "renewal_confirmed"]
    assert [("renewal_confirmed", "s1", "2027-03-15")] == confirmed
    assert [("auto_renewed", "s1", "2027-03-15")] == [
        n.key for n in auto[AD].notices if n.kind == "auto_renewed"]


def test_an_extended_first_term_renews_for_twelve_months_and_then_needs_a_renewal(
    policy: Policy,
) -> None:
    """After the extended term comes one 12-month term; without auto-renew it then expires."""
    history = daily(subscription(date(2024, 3, 15), term=36), days_from_ad(0, NEXT_AD), policy)
    final = history[NEXT_AD].state
    assert ("grace", NEXT_AD, 12, False) == (
        final.status, final.anniversary_date, final.term_months, final.first_term_extended)
    assert ["subscription_expired"] == new_kinds(history, NEXT_AD)


def test_a_late_renewal_counts_its_years_on_from_the_old_anniversary(
    policy: Policy,
) -> None:
    """A late renewal counts the new term on from the old AD, not from the order date."""
    late = Renewal(ordered_on=date(2027, 4, 1), years=2)
    history = daily(subscription(renewal=late), date(2027, 4, 1), policy)
    assert date(2029, 3, 15) == history[date(2027, 4, 1)].state.anniversary_date


def test_a_spent_renewal_applies_once_and_the_next_anniversary_expires(policy: Policy) -> None:
    """A recorded renewal applies to one AD only; re-importing it changes nothing."""
    history = daily(subscription(renewal=RENEWED_BEFORE), NEXT_AD, policy,
                    imports={date(2027, 6, 1): lambda s: replace(s, renewal=RENEWED_BEFORE)})
    final = history[NEXT_AD].state
    assert ("grace", NEXT_AD) == (final.status, final.anniversary_date)
    assert RENEWED_BEFORE.ordered_on == final.renewal_spent_through


def test_a_monthly_term_renews_silently_and_never_drifts_from_its_anchor(
    policy: Policy,
) -> None:
    """Terms under 12 months: no renewal notices, no auto_renewed, never to_renew."""
    state = subscription(date(2027, 1, 31), date(2027, 2, 28), term=1, auto_renew=True)
    history = daily(state, date(2027, 6, 15), policy)
    final = history[date(2027, 6, 15)].state
    every_kind = {n.kind for r in history.values() for n in r.notices}
    every_status = {r.state.status for day, r in history.items() if day >= date(2027, 1, 31)}
    every_bucket = {r.bucket for day, r in history.items() if day >= date(2027, 1, 31)}
    assert {"subscription_started"} == every_kind
    assert {"active"} == every_status
    assert {"ok"} == every_bucket
    assert (date(2027, 6, 30), 1) == (final.anniversary_date, final.term_months)
    held = sorted({r.state.anniversary_date for r in history.values()})
    assert [date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30), date(2027, 5, 31),
            date(2027, 6, 30)] == held


def change_arrives(term: int) -> Import:
    """A pending change as the import records it: due at the AD the subscription holds."""
    return lambda s: replace(s, pending_change=PendingChange(term, s.anniversary_date))


def test_a_pending_change_applies_at_the_anniversary_it_arrived_before_and_not_sooner(
    policy: Policy,
) -> None:
    """Annual -> monthly: the term is still annual the day before AD, monthly from AD."""
    history = daily(subscription(auto_renew=True), days_from_ad(40), policy,
                    imports={days_from_ad(-60): change_arrives(1)})
    before, on_ad = history[days_from_ad(-1)].state, history[AD].state
    assert (12, PendingChange(1, AD)) == (before.term_months, before.pending_change)
    assert (1, None, date(2027, 4, 15)) == (
        on_ad.term_months, on_ad.pending_change, on_ad.anniversary_date)
    assert ["auto_renewed", "term_change_applied"] == new_kinds(history, AD)
    assert [] == new_kinds(history, date(2027, 4, 15))


def test_a_pending_change_arriving_after_an_anniversary_waits_for_the_next_one(
    policy: Policy,
) -> None:
    """The change is due at the end of the period it arrives in, never the one before."""
    history = daily(subscription(auto_renew=True), NEXT_AD, policy,
                    imports={days_from_ad(1): change_arrives(1)})
    assert 12 == history[days_from_ad(-1, NEXT_AD)].state.term_months
    assert 1 == history[NEXT_AD].state.term_months
    applied = [n for r in history.values() for n in r.notices if n.kind == "term_change_applied"]
    assert ["2028-03-15"] == [n.occasion for n in applied]


def test_a_pending_change_follows_the_term_a_renewal_ordered(policy: Policy) -> None:
    """A renewal's years decide the term it ordered; the change applies after it."""
    history = daily(subscription(renewal=RENEWED_TWO_YEARS), AD, policy,
                    imports={days_from_ad(-60): change_arrives(1)})
    final = history[AD].state
    assert (date(2029, 3, 15), 1, None) == (
        final.anniversary_date, final.term_months, final.pending_change)
    assert ["term_change_applied"] == new_kinds(history, AD)


def test_a_pending_change_waits_through_grace_and_applies_with_a_late_renewal(
    policy: Policy,
) -> None:
    """It takes effect only where the subscription goes on, at the AD it was due."""
    history = daily(subscription(renewal=RENEWED_IN_GRACE), days_from_ad(5), policy,
                    imports={days_from_ad(-60): change_arrives(1)})
    in_grace, renewed = history[days_from_ad(4)].state, history[days_from_ad(5)].state
    assert ("grace", 12, PendingChange(1, AD)) == (
        in_grace.status, in_grace.term_months, in_grace.pending_change)
    assert ("active", 1, NEXT_AD) == (
        renewed.status, renewed.term_months, renewed.anniversary_date)
    assert ["renewal_confirmed", "term_change_applied"] == new_kinds(history, days_from_ad(5))


def test_an_extended_first_term_ending_applies_a_pending_change(policy: Policy) -> None:
    """An extended term ending is one of the ways a subscription goes on."""
    history = daily(subscription(date(2024, 3, 15), term=36), AD, policy,
                    imports={days_from_ad(-60): change_arrives(24)})
    final = history[AD].state
    assert (24, date(2029, 3, 15)) == (final.term_months, final.anniversary_date)
    assert ["auto_renewed", "term_change_applied"] == new_kinds(history, AD)


@pytest.mark.parametrize(
    ("state", "day", "expected"),
    [
        pytest.param(subscription(), START - timedelta(days=1), "not_started", id="not-started"),
        pytest.param(subscription(), days_from_ad(-91), "ok", id="AD-91"),
        pytest.param(subscription(), days_from_ad(-90), "to_renew", id="AD-90"),
        pytest.param(subscription(renewal=RENEWED_BEFORE), days_from_ad(-20), "renewed",
                     id="renewed"),
        pytest.param(subscription(), AD, "expired", id="grace"),
        pytest.param(subscription(), days_from_ad(14), "lapsed", id="lapsed"),
        pytest.param(subscription(date(2027, 2, 15), term=1, auto_renew=True),
                     date(2027, 3, 10), "ok", id="monthly-never-to-renew"),
    ],
)
def test_the_bucket_follows_the_seed_dashboards_colours(
    state: SubscriptionState, day: date, expected: str, policy: Policy
) -> None:
    """to_renew is an AD within 90 days, not renewed, not in grace, 12+ month terms."""
    assert expected == daily(state, day, policy)[day].bucket


# Timezones -----------------------------------------------------------------------------

SAME_INSTANT = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "status", "notice"),
    [
        pytest.param("America/Los_Angeles", "ready_for_renewal",
                     ("renewal_reminder", "s1", "2027-03-01/1"), id="los-angeles-28-feb"),
        pytest.param("Pacific/Auckland", "grace",
                     ("subscription_expired", "s1", "2027-03-01"), id="auckland-1-march"),
    ],
)
def test_the_same_instant_is_a_different_day_for_customers_in_different_zones(
    zone: str, status: str, notice: tuple[str, str, str], policy: Policy
) -> None:
    """Thresholds are judged on the customer's local date: AD 1 March, at 02:00Z."""
    state = subscription(date(2026, 3, 1), date(2027, 3, 1))
    today = local_date(SAME_INSTANT, ZoneInfo(zone))
    result = evaluate_subscription(state, today, policy)
    assert (status, [notice]) == (result.state.status, [n.key for n in result.notices])


# Catch-up ------------------------------------------------------------------------------


def test_a_twenty_day_gap_records_every_transition_but_sends_the_latest_notice_only(
    policy: Policy,
) -> None:
    """Catch-up: renewal_upcoming and the window both fell due; only the window is sent."""
    before = evaluate_subscription(subscription(), days_from_ad(-50), policy)
    after = evaluate_subscription(before.state, days_from_ad(-30), policy)
    assert [("active", "renewal_upcoming", days_from_ad(-45)),
            ("renewal_upcoming", "ready_for_renewal", days_from_ad(-30))] == statuses(after)
    assert ["renewal_window_open"] == kinds(after)
    assert {"renewal": after.notices[0].key, "grace": None} == after.live


def test_a_gap_across_the_lapse_day_sends_only_subscription_lapsed(policy: Policy) -> None:
    """Expired, grace ending and lapsed all fell due in the gap: only the latest is wanted."""
    before = evaluate_subscription(subscription(), days_from_ad(-5), policy)
    after = evaluate_subscription(before.state, days_from_ad(15), policy)
    assert [("ready_for_renewal", "grace", AD),
            ("grace", "lapsed", days_from_ad(14))] == statuses(after)
    assert ["subscription_lapsed"] == kinds(after)
    assert {"renewal": None, "grace": ("subscription_lapsed", "s1", "2027-03-15")} == after.live


def test_a_gap_across_an_auto_renewal_sends_auto_renewed_and_no_renewal_notice(
    policy: Policy,
) -> None:
    """The renewal family is overtaken once the AD has passed: live renewal is None."""
    before = evaluate_subscription(subscription(auto_renew=True), days_from_ad(-10), policy)
    after = evaluate_subscription(before.state, days_from_ad(10), policy)
    assert [("ready_for_renewal", "active", AD)] == statuses(after)
    assert ["auto_renewed"] == kinds(after)
    assert {"renewal": None, "grace": None} == after.live


def test_a_first_pass_records_every_transition_since_the_start_in_order(
    policy: Policy,
) -> None:
    """A pass long after the start walks through each status with its own date."""
    result = evaluate_subscription(subscription(), days_from_ad(20), policy)
    assert [("pending_start", "active", START),
            ("active", "renewal_upcoming", days_from_ad(-45)),
            ("renewal_upcoming", "ready_for_renewal", days_from_ad(-30)),
            ("ready_for_renewal", "grace", AD),
            ("grace", "lapsed", days_from_ad(14))] == statuses(result)


@pytest.mark.parametrize(
    ("days_since_start", "expected"),
    [(30, ["subscription_started"]), (31, []), (3 * 365, [])],
    ids=["30-days-back", "31-days-back", "years-back"],
)
def test_an_imported_portfolio_gets_no_subscription_started_beyond_the_horizon(
    days_since_start: int, expected: list[str], policy: Policy
) -> None:
    """A notice whose occasion is more than 30 days before T is not created at all."""
    today = date(2027, 1, 10)
    state = subscription(today - timedelta(days=days_since_start), date(2027, 6, 30))
    assert expected == kinds(evaluate_subscription(state, today, policy))


@pytest.mark.parametrize(
    ("days_since_ad", "expected"),
    [(44, ["subscription_lapsed"]), (45, [])],
    ids=["lapsed-30-days-back", "lapsed-31-days-back"],
)
def test_an_old_lapse_is_recorded_but_not_announced_beyond_the_horizon(
    days_since_ad: int, expected: list[str], policy: Policy
) -> None:
    """The lapse day (AD + 14) is the occasion of subscription_lapsed."""
    today = date(2027, 6, 1)
    state = subscription(date(2025, 1, 10), today - timedelta(days=days_since_ad))
    result = evaluate_subscription(state, today, policy)
    assert ("lapsed", expected) == (result.state.status, kinds(result))


@pytest.mark.parametrize(
    ("state", "day"),
    [
        pytest.param(subscription(), AD, id="in-grace"),
        pytest.param(subscription(auto_renew=True), days_from_ad(1), id="after-auto-renewal"),
        pytest.param(subscription(renewal=RENEWED_BEFORE), days_from_ad(-7), id="renewed"),
    ],
)
def test_no_renewal_notice_once_the_anniversary_passed_or_a_renewal_is_recorded(
    state: SubscriptionState, day: date, policy: Policy
) -> None:
    """Overtaken renewal notices are neither created nor kept queued (live is None)."""
    result = daily(state, day, policy)[day]
    assert (None, []) == (result.live["renewal"],
                          [n.kind for n in result.notices if n.family == "renewal"])


def test_a_renewal_in_grace_overtakes_the_grace_notices(policy: Policy) -> None:
    """Once renewed late, no grace notice is still wanted."""
    result = daily(subscription(renewal=RENEWED_IN_GRACE), days_from_ad(5), policy)
    assert None is result[days_from_ad(5)].live["grace"]


def test_auto_renewed_names_the_term_that_starts_when_a_change_applies(policy: Policy) -> None:
    """Annual -> monthly at AD: the notice says one month and the AD a month on, not a year."""
    history = daily(subscription(auto_renew=True), AD, policy,
                    imports={days_from_ad(-60): change_arrives(1)})
    [renewed] = [n for n in history[AD].notices if n.kind == "auto_renewed"]
    assert (1, "2027-04-15") == (renewed.facts["term_months"],
                                 renewed.facts["next_anniversary_date"])


def test_auto_renewed_after_an_extended_term_names_the_twelve_month_term(
    policy: Policy,
) -> None:
    """The extended first term ends: the next term is 12 months, whatever the first was."""
    history = daily(subscription(date(2024, 3, 15), term=36), AD, policy)
    [renewed] = [n for n in history[AD].notices if n.kind == "auto_renewed"]
    assert (12, "2028-03-15") == (renewed.facts["term_months"],
                                  renewed.facts["next_anniversary_date"])


def later_anniversary(ad: date) -> Import:
    """A re-import naming a later AD: it replaces the held one, the anchor follows it."""
    return lambda s: replace(s, anniversary_date=ad, anchor_day=anchor_day(s.start_date, ad))


@pytest.mark.parametrize(
    ("imported_on", "was"),
    [pytest.param(days_from_ad(-10), "ready_for_renewal", id="in-the-window"),
     pytest.param(days_from_ad(5), "grace", id="in-grace")],
)
def test_a_later_anniversary_imported_puts_the_term_back_to_running(
    imported_on: date, was: str, policy: Policy
) -> None:
    """The status follows the new AD's thresholds; the old AD's notices are overtaken."""
    history = daily(subscription(), imported_on, policy,
                    imports={imported_on: later_anniversary(date(2027, 9, 30))})
    before, after = history[imported_on - timedelta(days=1)], history[imported_on]
    assert (was, "active", date(2027, 9, 30)) == (
        before.state.status, after.state.status, after.state.anniversary_date)
    assert {"renewal": None, "grace": None} == after.live


def test_a_monthly_term_without_auto_renew_expires_into_grace(policy: Policy) -> None:
    """Short terms skip renewal notices only; with nothing to go on, grace still follows."""
    state = subscription(date(2027, 1, 10), date(2027, 2, 10), term=1)
    history = daily(state, date(2027, 2, 10), policy)
    assert ("grace", ["subscription_expired"]) == (
        history[date(2027, 2, 10)].state.status, new_kinds(history, date(2027, 2, 10)))


# The audit trail and the templates read more than the status: every move's reason and
# date, and each notice's facts. Walked day by day; the literal lists below are the
# trail docs/rules.md describes for each story.
TRAIL_START = [("active", "started", START),
               ("renewal_upcoming", "renewal_upcoming", date(2027, 1, 29)),
               ("ready_for_renewal", "renewal_window", date(2027, 2, 13))]


def _renew_on(day: date, years: int = 1) -> Import:
    return lambda s: replace(s, renewal=Renewal(day, years))


STORIES = [
    pytest.param(subscription(), {}, AD + timedelta(days=15), [
        ("grace", "anniversary_passed", AD), ("lapsed", "grace_over", date(2027, 3, 29))],
        ("subscription_lapsed", date(2027, 3, 29),
         {"anniversary_date": "2027-03-15", "lapse_date": "2027-03-29"}), id="lapse"),
    pytest.param(subscription(), {date(2027, 2, 20): _renew_on(date(2027, 2, 20), 2)},
                 AD + timedelta(days=1), [
        ("renewed", "renewal_recorded", date(2027, 2, 20)), ("active", "renewal_applied", AD)],
        ("renewal_confirmed", date(2027, 2, 20),
         {"anniversary_date": "2027-03-15", "next_anniversary_date": "2029-03-15",
          "years": 2, "ordered_on": "2027-02-20"}), id="renewed-for-two-years-before-the-ad"),
    pytest.param(subscription(renewal=Renewal(AD, 1)), {}, AD + timedelta(days=1), [
        ("active", "renewal_applied", AD)],
        ("renewal_confirmed", AD,
         {"anniversary_date": "2027-03-15", "next_anniversary_date": "2028-03-15",
          "years": 1, "ordered_on": "2027-03-15"}), id="ordered-on-the-ad-itself"),
    pytest.param(subscription(), {date(2027, 3, 20): _renew_on(date(2027, 3, 20))},
                 AD + timedelta(days=6), [
        ("grace", "anniversary_passed", AD), ("active", "renewed_late", date(2027, 3, 20))],
        ("renewal_confirmed", date(2027, 3, 20),
         {"anniversary_date": "2027-03-15", "next_anniversary_date": "2028-03-15",
          "years": 1, "ordered_on": "2027-03-20"}), id="renewed-late-in-grace"),
    pytest.param(subscription(), {date(2027, 2, 20): _renew_on(date(2027, 2, 20)),
                                  date(2027, 2, 24): lambda s: replace(s, renewal=None)},
                 date(2027, 2, 25), [
        ("renewed", "renewal_recorded", date(2027, 2, 20)),
        ("ready_for_renewal", "renewal_withdrawn", date(2027, 2, 24))],
        None, id="renewal-withdrawn"),
    pytest.param(subscription(), {
        date(2027, 2, 20): lambda s: replace(s, anniversary_date=date(2027, 6, 15))},
        date(2027, 2, 21), [("active", "anniversary_moved", date(2027, 2, 20))],
        None, id="ad-moved-later-before-it"),
    pytest.param(subscription(), {
        date(2027, 3, 20): lambda s: replace(s, anniversary_date=date(2027, 6, 15))},
        date(2027, 3, 21), [("grace", "anniversary_passed", AD),
                            ("active", "anniversary_moved", date(2027, 3, 20))],
        None, id="ad-moved-later-in-grace"),
    pytest.param(subscription(auto_renew=True, change=PendingChange(24, AD)), {},
                 AD + timedelta(days=1), [("active", "auto_renewed", AD)],
        ("term_change_applied", AD,
         {"anniversary_date": "2027-03-15", "from_term_months": 12, "to_term_months": 24}),
        id="auto-renewed-with-a-term-change"),
]


@pytest.mark.parametrize(("state", "imports", "until", "trail", "notice"), STORIES)
def test_each_story_leaves_its_trail_of_reasons_and_dates_and_its_notice_facts(
    state: SubscriptionState, imports: Mapping[date, Import], until: date,
    trail: list[tuple[str, str, date]], notice: tuple[str, date, dict[str, object]] | None,
    policy: Policy,
) -> None:
    history = daily(state, until, policy, imports)
    moves = [(c.field, c.to_value, c.reason, c.effective_on)
             for result in history.values() for c in result.changes]
    assert [("status", *move) for move in TRAIL_START + trail] == moves
    if notice is not None:
        kind, occasion_date, facts = notice
        [found] = {n.key: n for r in history.values() for n in r.notices
                   if n.kind == kind}.values()
        assert (occasion_date, facts) == (found.occasion_date, found.facts)


def test_auto_renewal_notice_names_both_anniversaries_and_the_new_term(policy: Policy) -> None:
    history = daily(subscription(auto_renew=True, change=PendingChange(24, AD)),
                    AD, policy)
    [found] = [n for n in history[AD].notices if n.kind == "auto_renewed"]
    assert {"anniversary_date": "2027-03-15", "next_anniversary_date": "2029-03-15",
            "term_months": 24} == found.facts
    assert (date(2029, 3, 15), 24, None) == (
        history[AD].state.anniversary_date, history[AD].state.term_months,
        history[AD].state.pending_change)


def test_a_change_for_a_later_anniversary_survives_an_auto_renewal(policy: Policy) -> None:
    """Due at the 2028 AD: the 2027 renewal keeps it waiting, unchanged."""
    change = PendingChange(1, NEXT_AD)
    history = daily(subscription(auto_renew=True, change=change), AD, policy)
    assert (NEXT_AD, 12, change) == (history[AD].state.anniversary_date,
                                     history[AD].state.term_months,
                                     history[AD].state.pending_change)
    assert [] == [n for n in history[AD].notices if n.kind == "term_change_applied"]


def _ready(policy: Policy) -> SubscriptionState:
    """s1 as the pass of the day before its AD leaves it: ready for renewal."""
    return daily(subscription(), AD - timedelta(days=1), policy)[AD - timedelta(days=1)].state


def _moves(result: SubscriptionResult) -> list[tuple[str, str, date]]:
    return [(c.to_value, c.reason, c.effective_on) for c in result.changes]


def test_one_catch_up_pass_lapses_then_applies_a_renewal_ordered_after_the_lapse(
    policy: Policy,
) -> None:
    """No pass from the day before the AD to AD + 25; ordered on AD + 20."""
    state = replace(_ready(policy), renewal=Renewal(AD + timedelta(days=20), 1))
    result = evaluate_subscription(state, AD + timedelta(days=25), policy)
    assert [("grace", "anniversary_passed", AD),
            ("lapsed", "grace_over", AD + timedelta(days=14)),
            ("active", "renewed_late", AD + timedelta(days=20))] == _moves(result)
    assert NEXT_AD == result.state.anniversary_date


def test_one_catch_up_pass_goes_on_past_a_late_renewal_to_the_next_terms_thresholds(
    policy: Policy,
) -> None:
    """Renewed in grace (AD + 5), next pass 330 days after the AD: the new term's
    renewal_upcoming (NEXT_AD - 45) is reached in the same pass."""
    state = replace(_ready(policy), renewal=Renewal(AD + timedelta(days=5), 1))
    result = evaluate_subscription(state, AD + timedelta(days=330), policy)
    assert [("grace", "anniversary_passed", AD),
            ("active", "renewed_late", AD + timedelta(days=5)),
            ("renewal_upcoming", "renewal_upcoming", NEXT_AD - timedelta(days=45))
            ] == _moves(result)


def test_a_renewal_ordered_on_the_lapse_day_prevents_the_lapse(policy: Policy) -> None:
    ordered = AD + timedelta(days=14)
    history = daily(subscription(), ordered, policy, {ordered: _renew_on(ordered)})
    assert [("active", "renewed_late", ordered)] == _moves(history[ordered])


def test_a_renewal_known_only_after_the_lapse_takes_effect_on_the_lapse_day(
    policy: Policy,
) -> None:
    """Ordered in grace (AD + 10) but imported at AD + 20, after the lapse: a move cannot
    be dated before the status it leaves, so renewal and confirmation are dated AD + 14."""
    lapse_day = AD + timedelta(days=14)
    history = daily(subscription(), AD + timedelta(days=20), policy,
                    {AD + timedelta(days=20): _renew_on(AD + timedelta(days=10))})
    assert [("active", "renewed_late", lapse_day)] == _moves(history[AD + timedelta(days=20)])
    [confirmed] = [n for n in history[AD + timedelta(days=20)].notices
                   if n.kind == "renewal_confirmed"]
    assert lapse_day == confirmed.occasion_date


def test_in_grace_the_next_checks_are_the_grace_ending_day_then_the_lapse_day(
    policy: Policy,
) -> None:
    history = daily(subscription(), AD + timedelta(days=12), policy)
    assert [date(2027, 3, 26), date(2027, 3, 29), date(2027, 3, 29)] == [
        history[day].next_check_on for day in (AD, date(2027, 3, 26), date(2027, 3, 27))]


def test_a_renewal_ordered_on_the_window_day_goes_straight_to_renewed(policy: Policy) -> None:
    """The order and the AD - 30 threshold fall on one day: the order wins, with no
    ready_for_renewal step recorded."""
    window = AD - timedelta(days=30)
    history = daily(subscription(), window, policy, {window: _renew_on(window)})
    assert [("renewed", "renewal_recorded", window)] == _moves(history[window])


def test_renewal_notices_name_the_anniversary_and_how_many_days_before(
    policy: Policy,
) -> None:
    history = daily(subscription(), AD - timedelta(days=1), policy)
    facts = {(n.kind, n.occasion_date): n.facts for r in history.values()
             for n in r.notices if n.family == "renewal"}
    assert {
        ("renewal_upcoming", date(2027, 1, 29)): {"anniversary_date": "2027-03-15",
                                                  "days_before": 45},
        ("renewal_window_open", date(2027, 2, 13)): {"anniversary_date": "2027-03-15",
                                                     "days_before": 30},
        ("renewal_reminder", date(2027, 3, 8)): {"anniversary_date": "2027-03-15",
                                                 "days_before": 7},
        ("renewal_reminder", date(2027, 3, 14)): {"anniversary_date": "2027-03-15",
                                                  "days_before": 1},
    } == facts


def test_an_unknown_stored_status_is_an_error_naming_the_subscription(policy: Policy) -> None:
    with pytest.raises(RecordError, match=r"^subscription s1: unknown status 'bogus'$"):
        evaluate_subscription(replace(subscription(), status="bogus"), AD, policy)


def test_a_renewal_withdrawn_after_the_anniversary_falls_into_grace_in_the_same_pass(
    policy: Policy,
) -> None:
    """Renewed 20 days before the AD; the order is withdrawn and the next pass comes three
    days after the AD: back to ready_for_renewal, then grace, both on the day it was
    learnt (no move is dated before the status it leaves)."""
    ordered = AD - timedelta(days=20)
    renewed = daily(subscription(), ordered, policy, {ordered: _renew_on(ordered)})[ordered]
    learnt = AD + timedelta(days=3)
    result = evaluate_subscription(replace(renewed.state, renewal=None), learnt, policy)
    assert [("ready_for_renewal", "renewal_withdrawn", learnt),
            ("grace", "anniversary_passed", learnt)] == _moves(result)


def test_an_order_imported_late_is_recorded_and_confirmed_from_the_status_it_leaves(
    policy: Policy,
) -> None:
    """Ordered at AD - 40, imported at AD - 20 (the subscription ready since AD - 30): the
    renewal and its confirmation are dated AD - 30."""
    window, imported = AD - timedelta(days=30), AD - timedelta(days=20)
    history = daily(subscription(), imported, policy,
                    {imported: _renew_on(AD - timedelta(days=40))})
    assert [("renewed", "renewal_recorded", window)] == _moves(history[imported])
    [confirmed] = [n for n in history[imported].notices if n.kind == "renewal_confirmed"]
    assert window == confirmed.occasion_date
