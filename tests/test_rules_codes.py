"""Reseller-change codes (docs/rules.md): 72 hours to the minute, single use, latest notice."""


from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.config.policy import Policy
from worker.rules.codes import Code, CodeResult, evaluate_code
from worker.rules.model import Change

ISSUED = datetime(2027, 1, 10, 9, 30, tzinfo=UTC)
EXPIRY = ISSUED + timedelta(hours=72)
PARIS = ZoneInfo("Europe/Paris")


def after(hours: int, minutes: int = 0) -> datetime:
    return ISSUED + timedelta(hours=hours, minutes=minutes)


def code(used_at: datetime | None = None, status: str = "active") -> Code:
    return Code("k1", ISSUED, used_at, status)


def kinds(result: CodeResult) -> list[str]:
    return [notice.kind for notice in result.notices]


@pytest.mark.parametrize(
    ("now", "status", "notices"),
    [
        pytest.param(ISSUED, "active", [], id="at-issue"),
        pytest.param(after(47, 59), "active", [], id="47h59"),
        pytest.param(after(48), "active", ["reseller_code_expiring"], id="48h00-24h-before"),
        pytest.param(after(71, 59), "active", ["reseller_code_expiring"], id="71h59"),
        pytest.param(after(72), "expired", ["reseller_code_expired"], id="72h00"),
        pytest.param(after(200), "expired", ["reseller_code_expired"], id="days-later"),
    ],
)
def test_a_code_is_valid_seventy_two_hours_to_the_minute(
    now: datetime, status: str, notices: list[str], policy: Policy
) -> None:
    """Active until issue + 72 h, warning from 24 h before; only the latest notice is due."""
    result = evaluate_code(code(), now, PARIS, policy)
    assert (status, notices) == (result.status, kinds(result))


@pytest.mark.parametrize(
    ("used_at", "now"),
    [
        pytest.param(after(10), after(11), id="used-before-the-warning"),
        pytest.param(after(60), after(61), id="used-after-the-warning"),
        pytest.param(after(60), after(100), id="used-then-past-expiry"),
        pytest.param(after(71, 59), after(72), id="used-in-the-last-minute"),
    ],
)
def test_a_code_used_before_expiry_is_used_and_announces_nothing(
    used_at: datetime, now: datetime, policy: Policy
) -> None:
    """First use ends the code: no expiring warning, no expired notice, none kept queued."""
    result = evaluate_code(code(used_at), now, PARIS, policy)
    assert ("used", [], None) == (result.status, kinds(result), result.live_key)


def test_a_use_after_expiry_does_not_revive_the_code(policy: Policy) -> None:
    """Expiry comes first at 72:00; a later use finds it expired."""
    result = evaluate_code(code(after(73)), after(74), PARIS, policy)
    assert ("expired", ["reseller_code_expired"]) == (result.status, kinds(result))


def test_expiry_overtakes_the_expiring_warning(policy: Policy) -> None:
    """Only the latest of expiring/expired is wanted: live names the expired notice."""
    warned = evaluate_code(code(), after(50), PARIS, policy)
    expired = evaluate_code(code(status=warned.status), after(72), PARIS, policy)
    assert ("reseller_code_expiring", "k1", "k1") == warned.live_key
    assert ("reseller_code_expired", "k1", "k1") == expired.live_key


def test_expiry_is_recorded_at_its_own_minute_after_a_gap(policy: Policy) -> None:
    """A pass days later records the change at the expiry instant, dated in the zone."""
    result = evaluate_code(code(), after(150), PARIS, policy)
    [change] = result.changes
    assert ("active", "expired", EXPIRY, date(2027, 1, 13)) == (
        change.from_value, change.to_value, change.effective_at, change.effective_on)


def test_a_code_already_expired_records_no_change_again(policy: Policy) -> None:
    """A second pass on an expired code changes nothing."""
    result = evaluate_code(code(status="expired"), after(80), PARIS, policy)
    assert () == result.changes


@pytest.mark.parametrize(
    ("late_by", "expected"),
    [(timedelta(days=30), ["reseller_code_expired"]),
     (timedelta(days=30, minutes=1), [])],
    ids=["30-days-after-expiry", "30-days-and-a-minute"],
)
def test_an_expiry_beyond_the_horizon_is_not_announced(
    late_by: timedelta, expected: list[str], policy: Policy
) -> None:
    """The occasion of reseller_code_expired is the expiry minute."""
    result = evaluate_code(code(), EXPIRY + late_by, PARIS, policy)
    assert ("expired", expected) == (result.status, kinds(result))


def test_an_active_code_is_looked_at_again_at_the_warning_and_at_expiry(
    policy: Policy,
) -> None:
    """The pass needs the next minute a code's decision can change."""
    assert after(48) == evaluate_code(code(), after(1), PARIS, policy).next_check
    assert EXPIRY == evaluate_code(code(), after(49), PARIS, policy).next_check
    assert None is evaluate_code(code(), after(72), PARIS, policy).next_check



# What the templates and the audit trail read: facts, reasons and dates in the zone. A
# code issued at 23:30 UTC expires at 00:30 the next day in Paris: dates taken in UTC
# instead of the zone would be one day early.
LATE = datetime(2027, 1, 10, 23, 30, tzinfo=UTC)
LATE_FACTS = {"issued_at": "2027-01-10T23:30:00+00:00",
              "expires_at": "2027-01-13T23:30:00+00:00"}


def test_the_expired_notice_and_change_are_dated_in_the_zone_with_their_facts(
    policy: Policy,
) -> None:
    result = evaluate_code(Code("k2", LATE, None, "active"), LATE + timedelta(hours=80),
                           PARIS, policy)
    expiry = LATE + timedelta(hours=72)
    assert (Change("status", "active", "expired", "expired", date(2027, 1, 14), expiry),
            ) == result.changes
    [notice] = result.notices
    assert ("reseller_code_expired", "k2", "k2", date(2027, 1, 14), LATE_FACTS) == (
        notice.kind, notice.ref, notice.occasion, notice.occasion_date, notice.facts)


def test_the_expiring_notice_is_dated_on_the_warning_day_in_the_zone(policy: Policy) -> None:
    """The warning starts at 23:30 UTC on 12 January: 13 January in Paris."""
    result = evaluate_code(Code("k2", LATE, None, "active"), LATE + timedelta(hours=50),
                           PARIS, policy)
    [notice] = result.notices
    assert ("reseller_code_expiring", date(2027, 1, 13), LATE_FACTS) == (
        notice.kind, notice.occasion_date, notice.facts)


@pytest.mark.parametrize(
    ("stored", "used_at", "now", "expected"),
    [
        pytest.param("active", after(30), after(30), ("used", "used", after(30)),
                     id="used-at-the-pass-moment"),
        pytest.param("active", EXPIRY, after(73), ("expired", "expired", EXPIRY),
                     id="used-at-the-expiry-minute-is-too-late"),
        pytest.param("used", None, after(1), ("active", "issued", ISSUED),
                     id="a-use-withdrawn-reactivates"),
    ],
)
def test_each_move_names_its_reason_and_its_instant(
    stored: str, used_at: datetime | None, now: datetime, expected: tuple[str, str, datetime],
    policy: Policy,
) -> None:
    result = evaluate_code(Code("k1", ISSUED, used_at, stored), now, PARIS, policy)
    [change] = result.changes
    assert expected == (change.to_value, change.reason, change.effective_at)
    assert "status" == change.field


def test_a_code_no_longer_active_is_never_looked_at_again(policy: Policy) -> None:
    """Used before expiry: the expiry still ahead asks for no check."""
    assert None is evaluate_code(code(after(10)), after(11), PARIS, policy).next_check


def test_at_the_warning_minute_the_next_check_is_the_expiry(policy: Policy) -> None:
    """Not the warning minute again (a pass that would loop on the same minute)."""
    assert EXPIRY == evaluate_code(code(), after(48), PARIS, policy).next_check
