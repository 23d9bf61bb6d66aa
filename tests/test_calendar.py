"""Date arithmetic of docs/rules.md's "Anniversaries" and "Time": anchors, clamped months, zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.rules.calendar import add_months, anchor_day, local_date, local_midnight

AUCKLAND = ZoneInfo("Pacific/Auckland")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def anniversaries(first: date, term: int, anchor: int, count: int) -> list[date]:
    """Each AD from the previous one, as the worker moves it at every renewal."""
    days = [first]
    for _ in range(count):
        days.append(add_months(days[-1], term, anchor))
    return days


@pytest.mark.parametrize(
    ("start", "first_ad", "expected"),
    [
        (date(2026, 3, 15), date(2027, 3, 15), 15),
        (date(2024, 2, 29), date(2025, 2, 28), 29),
        (date(2026, 1, 31), date(2027, 2, 28), 31),
        (date(2026, 1, 30), date(2027, 2, 28), 30),
        (date(2026, 5, 31), date(2027, 4, 30), 31),
        (date(2026, 3, 15), date(2027, 4, 30), 30),
        (date(2026, 3, 10), date(2027, 3, 31), 31),
        (date(2026, 2, 28), date(2027, 2, 28), 28),
        (date(2026, 1, 28), date(2027, 2, 28), 28),
    ],
    ids=["same-day", "29-feb-start", "31-jan-start", "30-jan-start", "31-may-start",
         "chosen-month-end", "chosen-31st", "28-feb-start", "28-jan-start"],
)
def test_anchor_day_is_the_first_anniversary_day_unless_a_short_month_clamped_it(
    start: date, first_ad: date, expected: int
) -> None:
    """A clamped first AD (month too short for the start's day) keeps the start's day."""
    assert expected == anchor_day(start, first_ad)


def test_a_29_february_start_keeps_its_anniversary_on_29_february_in_leap_years() -> None:
    """Start 2024-02-29, AD 2025-02-28: the anchor 29 comes back in 2028."""
    anchor = anchor_day(date(2024, 2, 29), date(2025, 2, 28))
    expected = [date(2025, 2, 28), date(2026, 2, 28), date(2027, 2, 28), date(2028, 2, 29),
                date(2029, 2, 28)]
    assert expected == anniversaries(date(2025, 2, 28), 12, anchor, 4)


def test_a_31_january_monthly_term_goes_to_the_month_end_and_back_to_the_31st() -> None:
    """31 January + 1 month is 28 (or 29) February, then 31 March: never 28 March."""
    expected = [date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2027, 4, 30),
                date(2027, 5, 31)]
    assert expected == anniversaries(date(2027, 1, 31), 1, 31, 4)
    assert date(2028, 2, 29) == add_months(date(2028, 1, 31), 1, 31)


@pytest.mark.parametrize(
    ("day", "months", "anchor", "expected"),
    [
        (date(2027, 3, 31), 1, 31, date(2027, 4, 30)),
        (date(2027, 4, 30), 1, 31, date(2027, 5, 31)),
        (date(2027, 2, 28), 1, 31, date(2027, 3, 31)),
        (date(2027, 2, 28), 12, 29, date(2028, 2, 29)),
        (date(2027, 1, 31), 2, 31, date(2027, 3, 31)),
        (date(2027, 11, 30), 3, 31, date(2028, 2, 29)),
        (date(2027, 12, 15), 1, 15, date(2028, 1, 15)),
        (date(2027, 3, 15), 36, 15, date(2030, 3, 15)),
        (date(2027, 3, 15), 48, 15, date(2031, 3, 15)),
    ],
)
def test_adding_months_sets_the_day_back_to_the_anchor_clamped_to_the_month_end(
    day: date, months: int, anchor: int, expected: date
) -> None:
    """The day comes from the anchor, never from the (possibly clamped) previous AD."""
    assert expected == add_months(day, months, anchor)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [(LOS_ANGELES, date(2027, 2, 28)), (AUCKLAND, date(2027, 3, 1)), (ZoneInfo("UTC"),
                                                                       date(2027, 3, 1))],
    ids=["los-angeles", "auckland", "utc"],
)
def test_the_local_date_at_one_instant_depends_on_the_customers_timezone(
    zone: ZoneInfo, expected: date
) -> None:
    """At 2027-03-01T02:00Z it is still 28 February in Los Angeles (docs/rules.md, Time)."""
    assert expected == local_date(datetime(2027, 3, 1, 2, 0, tzinfo=UTC), zone)


@pytest.mark.parametrize(
    ("zone_name", "day"),
    [
        ("Europe/Paris", date(2027, 3, 28)),
        ("Europe/Paris", date(2027, 10, 31)),
        ("Pacific/Auckland", date(2027, 4, 4)),
        ("America/Santiago", date(2024, 9, 8)),
        ("America/Havana", date(2024, 3, 10)),
        ("Asia/Beirut", date(2024, 3, 31)),
        ("America/Sao_Paulo", date(2018, 11, 4)),
    ],
    ids=["paris-spring", "paris-autumn", "auckland-autumn", "santiago-midnight-gap",
         "havana-midnight-gap", "beirut-midnight-gap", "sao-paulo-midnight-gap"],
)
def test_local_midnight_is_the_first_instant_of_the_local_date(zone_name: str, day: date) -> None:
    """A check scheduled for a date must fall on that date, even when 00:00 does not exist."""
    zone = ZoneInfo(zone_name)
    midnight = local_midnight(day, zone)
    assert day == local_date(midnight, zone)
    assert day - timedelta(days=1) == local_date(midnight - timedelta(microseconds=1), zone)


def test_instants_are_given_in_utc_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Local midnight and a local time of day come back with a UTC offset of zero even
    when the process runs in Kolkata (+05:30): nothing leans on the host's zone."""
    import time as host_time
    from datetime import time as wall_time

    from worker.rules.calendar import local_time_of_day

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    host_time.tzset()
    try:
        midnight = local_midnight(date(2027, 3, 28), ZoneInfo("Europe/Paris"))
        eight = local_time_of_day(date(2027, 3, 28), wall_time(8), ZoneInfo("Europe/Paris"))
    finally:
        monkeypatch.undo()
        host_time.tzset()
    assert (datetime(2027, 3, 27, 23, 0, tzinfo=UTC), timedelta(0)) == (
        midnight, midnight.utcoffset())
    assert (datetime(2027, 3, 28, 6, 0, tzinfo=UTC), timedelta(0)) == (
        eight, eight.utcoffset())
