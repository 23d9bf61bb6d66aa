"""The reseller's daily digest of docs/rules.md: from 08:00 in the reseller's zone, once a day."""


from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.config.policy import Policy
from worker.rules.digest import GROUPS, Group, digest_notice, digest_timing

PARIS = ZoneInfo("Europe/Paris")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "due", "next_at"),
    [
        pytest.param(utc(2027, 1, 15, 6, 59), None, utc(2027, 1, 15, 7, 0),
                     id="07h59-paris-winter"),
        pytest.param(utc(2027, 1, 15, 7, 0), date(2027, 1, 15), utc(2027, 1, 16, 7, 0),
                     id="08h00-paris-winter"),
        pytest.param(utc(2027, 1, 15, 22, 30), date(2027, 1, 15), utc(2027, 1, 16, 7, 0),
                     id="23h30-paris"),
        pytest.param(utc(2027, 1, 15, 23, 30), None, utc(2027, 1, 16, 7, 0),
                     id="after-midnight-paris-yesterday-is-skipped"),
        pytest.param(utc(2027, 3, 27, 9, 0), date(2027, 3, 27), utc(2027, 3, 28, 6, 0),
                     id="eve-of-spring-change-next-at-08h00-summer-time"),
        pytest.param(utc(2027, 3, 28, 5, 59), None, utc(2027, 3, 28, 6, 0),
                     id="07h59-summer-time"),
        pytest.param(utc(2027, 3, 28, 6, 30), date(2027, 3, 28), utc(2027, 3, 29, 6, 0),
                     id="08h30-summer-time-already-due"),
        pytest.param(utc(2027, 10, 30, 6, 30), date(2027, 10, 30), utc(2027, 10, 31, 7, 0),
                     id="eve-of-autumn-change-next-at-08h00-winter-time"),
    ],
)
def test_the_digest_is_due_from_eight_local_and_next_due_at_eight_tomorrow(
    now: datetime, due: date | None, next_at: datetime, policy: Policy
) -> None:
    """Before 08:00 nothing (not even yesterday's); from 08:00 today's; across DST too."""
    timing = digest_timing(now, PARIS, policy)
    assert (due, next_at) == (timing.local_date, timing.next_at)


@pytest.mark.parametrize(
    ("zone", "due"),
    [("America/Los_Angeles", date(2027, 2, 28)), ("Pacific/Auckland", date(2027, 3, 1))],
    ids=["los-angeles-18h00-28-feb", "auckland-15h00-1-march"],
)
def test_the_digest_date_is_the_resellers_local_date(
    zone: str, due: date, policy: Policy
) -> None:
    """Reseller matters use the reseller's timezone: one instant, two dates."""
    assert due == digest_timing(utc(2027, 3, 1, 2, 0), ZoneInfo(zone), policy).local_date


def groups(**counts: int) -> tuple[Group, ...]:
    return tuple(Group(key, counts.get(key, 0), ()) for key in GROUPS)


def test_a_reseller_with_nothing_to_act_on_gets_no_digest() -> None:
    """Every group empty: no digest."""
    assert None is digest_notice("r1", date(2027, 1, 15), groups())


def test_a_digest_is_keyed_by_the_reseller_and_the_local_date() -> None:
    """Once per local date: the occasion is that date."""
    notice = digest_notice("r1", date(2027, 1, 15), groups(to_renew=3, lapsed=1))
    assert notice is not None
    assert ("reseller_digest", "r1", "2027-01-15") == notice.key
    counts = {group["key"]: group["count"] for group in notice.facts["groups"]}
    assert (3, 1, 0) == (counts["to_renew"], counts["lapsed"], counts["renewed"])


def test_the_digest_lists_the_seed_dashboards_groups() -> None:
    """To renew, ready, in grace, lapsed, late, suspended, invitations, not started, renewed."""
    assert ("to_renew", "ready_for_renewal", "in_grace", "lapsed", "late_payment",
            "suspended", "pending_invitations", "not_started", "renewed") == GROUPS


def test_the_digest_facts_list_each_group_its_entries_and_how_many_more() -> None:
    """What the template reads: the date, and per group its count, the entries listed and
    the number left out ("and 12 more")."""
    entry = {"id": "s1", "name": "Boulangerie Dupont"}
    listed = tuple(Group(key, {"to_renew": 15, "lapsed": 1}.get(key, 0),
                         (entry,) * {"to_renew": 3, "lapsed": 1}.get(key, 0))
                   for key in GROUPS)
    notice = digest_notice("r1", date(2027, 1, 15), listed)
    assert notice is not None
    assert date(2027, 1, 15) == notice.occasion_date
    assert "2027-01-15" == notice.facts["date"]
    by_key = {group["key"]: group for group in notice.facts["groups"]}
    assert list(GROUPS) == list(by_key)
    assert {"key": "to_renew", "count": 15, "entries": [entry] * 3, "more": 12} == by_key[
        "to_renew"]
    assert {"key": "lapsed", "count": 1, "entries": [entry], "more": 0} == by_key["lapsed"]
    assert {"key": "renewed", "count": 0, "entries": [], "more": 0} == by_key["renewed"]
