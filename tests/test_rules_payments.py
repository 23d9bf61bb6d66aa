"""Payment standing of docs/rules.md, row by row: days outstanding from the request (day 0).

Each table row runs one pass a day from the request, feeding every pass the standing the
previous one left; "new notices" are those whose once-key no earlier pass produced.
"""


from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from worker.config.policy import Policy
from worker.rules.calendar import local_date
from worker.rules.payments import (
    Invoice,
    PaymentResult,
    Standing,
    effective_account_state,
    evaluate_payment,
)

REQUESTED = date(2027, 1, 2)

History = dict[date, PaymentResult]


def day(number: int) -> date:
    """The date `number` days after the first request (the request day is day 0)."""
    return REQUESTED + timedelta(days=number)


def invoice(ident: str = "pa1", requested: int = 0, paid: int | None = None) -> Invoice:
    return Invoice(ident, day(requested), None if paid is None else day(paid))


def daily(invoices: tuple[Invoice, ...], until: int, policy: Policy, first: int = 0) -> History:
    """One pass a day from day `first` to day `until`, each from the standing left before."""
    history: History = {}
    standing = Standing()
    for number in range(first, until + 1):
        history[day(number)] = evaluate_payment("c1", standing, invoices, day(number), policy)
        standing = history[day(number)].standing
    return history


def new_kinds(history: History, on: date) -> list[str]:
    """Kinds of the notices first produced on `on` (their once-key unseen before)."""
    seen = {n.key for other, r in history.items() if other < on for n in r.notices}
    return sorted(n.kind for n in history[on].notices if n.key not in seen)


def moves(result: PaymentResult) -> list[tuple[str | None, str, date]]:
    return [(c.from_value, c.to_value, c.effective_on) for c in result.changes]


UNPAID = (invoice(),)
PAID_WHILE_LATE = (invoice(paid=45),)
PAID_WHILE_SUSPENDED = (invoice(paid=70),)
PAID_ON_DAY_30 = (invoice(paid=30),)


@pytest.mark.parametrize(
    ("invoices", "on", "standing", "notices"),
    [
        pytest.param(UNPAID, 0, "current", [], id="request-day-is-day-0"),
        pytest.param(UNPAID, 30, "current", [], id="day-30"),
        pytest.param(UNPAID, 31, "late", ["payment_late"], id="day-31"),
        pytest.param(UNPAID, 60, "late", [], id="day-60"),
        pytest.param(UNPAID, 61, "suspended", ["payment_suspended"], id="day-61"),
        pytest.param(UNPAID, 200, "suspended", [], id="day-200"),
        pytest.param(PAID_ON_DAY_30, 31, "current", [], id="paid-on-day-30"),
        pytest.param(PAID_WHILE_LATE, 44, "late", [], id="day-before-paid-while-late"),
        pytest.param(PAID_WHILE_LATE, 45, "current", ["payment_reinstated"],
                     id="paid-while-late"),
        pytest.param(PAID_WHILE_SUSPENDED, 69, "suspended", [],
                     id="day-before-paid-while-suspended"),
        pytest.param(PAID_WHILE_SUSPENDED, 70, "current", ["payment_reinstated"],
                     id="paid-while-suspended"),
    ],
)
def test_each_payment_row_gives_its_standing_and_email_on_its_day(
    invoices: tuple[Invoice, ...], on: int, standing: str, notices: list[str], policy: Policy
) -> None:
    """docs/rules.md's payment table: 0-30 current, 31-60 late, 61+ suspended, paid current."""
    history = daily(invoices, on, policy)
    assert (standing, notices) == (history[day(on)].standing.standing,
                                   new_kinds(history, day(on)))


def test_payment_notices_are_keyed_by_the_episode_and_the_threshold(policy: Policy) -> None:
    """Once-key: the oldest item and 31 or 61; payment_reinstated: the episode."""
    history = daily(PAID_WHILE_SUSPENDED, 70, policy)
    keys = {n.key for r in history.values() for n in r.notices}
    assert {("payment_late", "c1", "pa1/31"), ("payment_suspended", "c1", "pa1/61"),
            ("payment_reinstated", "c1", "pa1")} == keys


def test_the_oldest_unpaid_item_decides_the_standing(policy: Policy) -> None:
    """A younger unpaid request does not hide an older one, nor the reverse."""
    invoices = (invoice("young", requested=40), invoice("old", requested=0))
    result = daily(invoices, 61, policy)[day(61)]
    assert ("suspended", "old") == (result.standing.standing, result.standing.episode)


def test_a_step_down_from_suspended_to_late_sends_nothing_then_or_later(
    policy: Policy,
) -> None:
    """Oldest paid, a younger one 31-60 days old: that episode's payment_late never goes."""
    invoices = (invoice("pa1", paid=70), invoice("pa2", requested=20))
    history = daily(invoices, 100, policy)
    stepped_down = history[day(70)]
    assert ("late", "pa2") == (stepped_down.standing.standing, stepped_down.standing.episode)
    assert ([], None) == (new_kinds(history, day(70)), stepped_down.live_key)
    late_for_pa2 = [n for r in history.values() for n in r.notices
                    if n.kind == "payment_late" and n.occasion.startswith("pa2/")]
    assert [] == late_for_pa2


def test_a_stepped_down_episode_reaching_day_61_is_suspended_and_says_so(
    policy: Policy,
) -> None:
    """Only that episode's payment_late is barred; its suspension is a new notice."""
    invoices = (invoice("pa1", paid=70), invoice("pa2", requested=20))
    history = daily(invoices, 81, policy)
    assert ("suspended", ["payment_suspended"]) == (
        history[day(81)].standing.standing, new_kinds(history, day(81)))
    assert ("payment_suspended", "c1", "pa2/61") == history[day(81)].live_key


def test_a_new_episode_after_a_late_one_gets_its_own_payment_late(policy: Policy) -> None:
    """Each oldest item opens an episode; notices are once per episode."""
    invoices = (invoice("pa1", paid=40), invoice("pa2", requested=5))
    history = daily(invoices, 40, policy)
    assert ["payment_late"] == new_kinds(history, day(40))
    assert ("payment_late", "c1", "pa2/31") == history[day(40)].live_key


def test_a_suspended_customer_gets_no_payment_late(policy: Policy) -> None:
    """Overtaken: no payment_late once suspended; live names the suspension notice."""
    result = daily(UNPAID, 61, policy)[day(61)]
    assert ["payment_suspended"] == [n.kind for n in result.notices]
    assert ("payment_suspended", "c1", "pa1/61") == result.live_key


def test_a_gap_records_every_move_and_sends_only_the_latest_payment_notice(
    policy: Policy,
) -> None:
    """Catch-up: late and suspended both fell due in the gap; only suspended is created."""
    before = evaluate_payment("c1", Standing(), UNPAID, day(20), policy)
    after = evaluate_payment("c1", before.standing, UNPAID, day(65), policy)
    assert [("current", "late", day(31)), ("late", "suspended", day(61))] == moves(after)
    assert ["payment_suspended"] == [n.kind for n in after.notices]


def test_late_and_paid_within_a_gap_records_both_moves_and_sends_nothing(
    policy: Policy,
) -> None:
    """docs/rules.md leaves it open; the late notice is overtaken, so no reinstatement either."""
    before = evaluate_payment("c1", Standing(), PAID_WHILE_LATE, day(20), policy)
    after = evaluate_payment("c1", before.standing, PAID_WHILE_LATE, day(50), policy)
    assert [("current", "late", day(31)), ("late", "current", day(45))] == moves(after)
    assert ([], None) == ([n.kind for n in after.notices], after.live_key)


@pytest.mark.parametrize(
    ("on", "expected"),
    [(91, ["payment_suspended"]), (92, [])],
    ids=["suspended-30-days-back", "suspended-31-days-back"],
)
def test_a_first_pass_announces_no_payment_threshold_beyond_the_horizon(
    on: int, expected: list[str], policy: Policy
) -> None:
    """A notice whose occasion (day 61) is more than 30 days before T is not created."""
    result = evaluate_payment("c1", Standing(), UNPAID, day(on), policy)
    assert ("suspended", expected) == (result.standing.standing,
                                       [n.kind for n in result.notices])


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("America/Los_Angeles", "current"), ("Pacific/Auckland", "late")],
    ids=["los-angeles-day-30", "auckland-day-31"],
)
def test_days_outstanding_are_counted_on_the_customers_local_date(
    zone: str, expected: str, policy: Policy
) -> None:
    """At 2027-03-01T02:00Z a request of 29 January is day 30 in LA, day 31 in Auckland."""
    today = local_date(datetime(2027, 3, 1, 2, 0, tzinfo=UTC), ZoneInfo(zone))
    invoices = (Invoice("pa1", date(2027, 1, 29), None),)
    assert expected == evaluate_payment("c1", Standing(), invoices, today, policy).standing.standing


@pytest.mark.parametrize(
    ("person_state", "standing", "expected"),
    [
        ("active", "current", "active"),
        ("active", "late", "active"),
        ("active", "suspended", "suspended"),
        ("suspended", "current", "suspended"),
        ("suspended", "suspended", "suspended"),
        ("updating", "late", "updating"),
        ("updating", "suspended", "suspended"),
    ],
)
def test_the_exported_account_state_is_suspended_when_a_person_or_the_standing_says_so(
    person_state: str, standing: str, expected: str
) -> None:
    """Paying lifts a payment suspension, never a suspension a person made."""
    assert expected == effective_account_state(person_state, standing)


def test_a_manual_suspension_survives_a_payment(policy: Policy) -> None:
    """The worker reinstates the standing; the person's suspension still holds."""
    standing = daily(PAID_WHILE_SUSPENDED, 70, policy)[day(70)].standing.standing
    assert ("current", "suspended") == (standing, effective_account_state("suspended", standing))


def test_each_notice_and_move_carries_its_facts_reason_and_own_date(policy: Policy) -> None:
    """What the templates and the audit trail read, for a request paid on day 70 after a
    suspension: late on day 31, suspended on day 61, reinstated on day 70."""
    history = daily(PAID_WHILE_SUSPENDED, 75, policy)
    seen = [(c.field, c.to_value, c.reason, c.effective_on)
            for result in history.values() for c in result.changes]
    assert [("payment_standing", "late", "unpaid_pa1", day(31)),
            ("payment_standing", "suspended", "unpaid_pa1", day(61)),
            ("payment_standing", "current", "paid", day(70))] == seen
    notices: dict[str, Any] = {}
    for result in history.values():  # the first pass that produced each
        for notice in result.notices:
            notices.setdefault(notice.kind, notice)
    late, suspended, back = (notices[kind] for kind in (
        "payment_late", "payment_suspended", "payment_reinstated"))
    assert (day(31), {"invoice_id": "pa1", "requested_on": "2027-01-02",
                      "days_outstanding": 31}) == (late.occasion_date, late.facts)
    assert (day(61), {"invoice_id": "pa1", "requested_on": "2027-01-02",
                      "days_outstanding": 61}) == (suspended.occasion_date, suspended.facts)
    assert (day(70), {"invoice_id": "pa1"}) == (back.occasion_date, back.facts)


def test_a_pass_after_a_gap_dates_the_reinstatement_on_the_payment_day(policy: Policy) -> None:
    """Late on day 40, paid on day 45, next pass on day 50: the notice is of day 45."""
    late = evaluate_payment("c1", Standing(), PAID_WHILE_LATE, day(40), policy)
    result = evaluate_payment("c1", late.standing, PAID_WHILE_LATE, day(50), policy)
    [notice] = result.notices
    assert ("payment_reinstated", day(45)) == (notice.kind, notice.occasion_date)
    assert (day(45), None) == (result.standing.since, result.standing.episode)


def test_a_customer_who_never_fell_behind_gets_no_notice(policy: Policy) -> None:
    """Current before and after (a request paid on day 30): nothing to say."""
    assert [] == [n for r in daily(PAID_ON_DAY_30, 40, policy).values() for n in r.notices]


def test_a_request_not_yet_late_opens_no_episode_and_asks_for_day_31(policy: Policy) -> None:
    """Current with a young unpaid request: no episode, no date, woken on day 31 (never
    again today)."""
    for today in (day(0), day(10)):
        result = evaluate_payment("c1", Standing(), UNPAID, today, policy)
        assert (Standing(), day(31)) == (result.standing, result.next_check_on)


def test_a_new_oldest_request_starts_a_new_episode_on_that_day(policy: Policy) -> None:
    """pa1 (day 0) is paid on day 40 while pa2 (day 5) is 35 days old: still late, now for
    pa2, since day 40; a catch-up pass agrees."""
    two = (invoice("pa1", 0, 40), invoice("pa2", 5))
    expected = Standing("late", "pa2", day(40), None)
    assert expected == daily(two, 45, policy)[day(45)].standing
    assert expected == evaluate_payment("c1", Standing(), two, day(45), policy).standing


def test_paying_everything_clears_the_episode_and_any_bar(policy: Policy) -> None:
    assert Standing("current", None, day(70), None) == daily(
        PAID_WHILE_SUSPENDED, 75, policy)[day(75)].standing
