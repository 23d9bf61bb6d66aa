"""The daily limit of reseller-change codes (004), judged in the reseller's timezone.

Per reseller and local calendar day, the stored codes count first (except those this
file re-imports under the same id: their merged version counts instead), then the
file's codes in the order they were issued. Each file code that finds the day already
full is an error.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from worker.importing.existing import stored_codes
from worker.importing.merge import Merged, World
from worker.importing.problems import Problems
from worker.rules.calendar import local_date

_MARGIN = timedelta(days=2)  # wider than any local day seen from UTC
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def check_code_limit(connection: Connection, world: World, problems: Problems) -> None:
    zones = _reseller_zones(world)
    issued = [
        (merged, merged.row["reseller_id"], merged.row["issued_at"])
        for merged in world.merged["reseller_change_codes"].values()
        if merged.row.get("reseller_id") in zones and merged.row.get("issued_at") is not None
    ]
    if not issued:
        return
    moments = [moment for _merged, _reseller, moment in issued]
    since, until = _widened(min(moments), -_MARGIN), _widened(max(moments), _MARGIN)
    per_day = _stored_per_day(connection, world, zones, since, until)
    limit = world.policy.codes.max_per_reseller_per_day
    for merged, reseller_id, moment in sorted(issued, key=_issue_order):
        day = local_date(moment, zones[reseller_id])
        already = per_day[(reseller_id, day)]
        per_day[(reseller_id, day)] = already + 1
        if already >= limit:
            problems.error(merged.record.where,
                           f"reseller {reseller_id!r} already issued {already} codes on {day} "
                           f"(its local date; limit {limit} a day)")


def _widened(moment: datetime, by: timedelta) -> datetime:
    try:
        return moment + by
    except OverflowError:  # near year 1 or 9999: the window ends where dates end
        return _LAST if by > timedelta(0) else _FIRST


def _issue_order(item: tuple[Merged, str, datetime]) -> tuple[datetime, tuple[int, int]]:
    merged, _reseller, moment = item
    return moment, merged.record.where.key


def _reseller_zones(world: World) -> dict[str, ZoneInfo]:
    """The timezone of every reseller the file's codes name (known and sound ones only)."""
    zones: dict[str, ZoneInfo] = {}
    for merged in world.merged["reseller_change_codes"].values():
        reseller_id = merged.row.get("reseller_id")
        if reseller_id is None or reseller_id in zones:
            continue
        reseller = world.row("resellers", reseller_id)
        if reseller is None or not world.sound("resellers", reseller_id, "timezone"):
            continue
        if reseller.get("timezone") is not None:
            zones[reseller_id] = ZoneInfo(reseller["timezone"])
    return zones


def _stored_per_day(connection: Connection, world: World, zones: dict[str, ZoneInfo],
                    since: datetime, until: datetime) -> Counter[tuple[str, date]]:
    reimported = world.file_ids["reseller_change_codes"]
    per_day: Counter[tuple[str, date]] = Counter()
    for code_id, reseller_id, moment in stored_codes(connection, set(zones), since, until):
        if code_id not in reimported:
            per_day[(reseller_id, local_date(moment, zones[reseller_id]))] += 1
    return per_day
