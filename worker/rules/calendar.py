"""Pure date arithmetic: anniversaries, clamped months, local dates.

Date policy (docs/rules.md, "Anniversaries" and "Time"):

* The anchor day is the day of month of the first anniversary date (AD) the worker is
  given, except where that AD is the last day of a month too short to hold the start
  date's day (start 29 February, AD 28 February 2027): then it is the start date's day.
* A new AD is the previous AD's year and month plus the term in months, with the day set
  to the anchor day and clamped to the month's end. Months are never added one at a
  time to a clamped date, so an anchor of 31 gives 30 April and then 31 May again.
* Every threshold is judged on the local calendar date of a timezone at a moment T.
  Local midnight of a date is the first instant of that date; where midnight does not
  exist (a DST change at 00:00) it is the first instant after the gap.
"""

from __future__ import annotations

import calendar as _calendar
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo


def days_in_month(year: int, month: int) -> int:
    return _calendar.monthrange(year, month)[1]


def is_month_end(day: date) -> bool:
    return day.day == days_in_month(day.year, day.month)


def anchor_day(start: date, first_anniversary: date) -> int:
    """The day of month every later anniversary is set back to."""
    month_too_short = days_in_month(first_anniversary.year, first_anniversary.month) < start.day
    if is_month_end(first_anniversary) and month_too_short:
        return start.day
    return first_anniversary.day


def add_months(day: date, months: int, anchor: int) -> date:
    """`day`'s month plus `months`, on the anchor day clamped to the month's end."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(anchor, days_in_month(year, month)))


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date at `moment` (timezone-aware) in `zone`."""
    return moment.astimezone(zone).date()


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (in UTC) of `day` in `zone`."""
    # fold=0 reads a wall time inside a DST gap with the offset from before the change,
    # which lands on the end of the gap: the day's first instant when the change is at
    # 00:00. (fold=1 would land before the gap, on the previous day.)
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def local_time_of_day(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (in UTC) when the wall clock in `zone` reads `at` on `day`."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
