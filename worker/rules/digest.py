"""The reseller's daily digest (docs/rules.md, "The reseller's daily digest").

From 08:00 in the reseller's timezone, once per local date, a reseller with anything to
act on gets one digest listing its customers as the seed dashboards group them, with
counts. A day whose digest was not created on that local date is skipped: the next pass
looks at its own local date only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from worker.config.policy import Policy
from worker.rules.calendar import local_time_of_day
from worker.rules.model import Notice

GROUPS = (
    "to_renew", "ready_for_renewal", "in_grace", "lapsed", "late_payment", "suspended",
    "pending_invitations", "not_started", "renewed",
)


@dataclass(frozen=True, slots=True)
class Group:
    """One dashboard group: how many, and the first few entries to list."""

    key: str
    count: int
    entries: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class DigestTiming:
    local_date: date | None
    next_at: datetime


def digest_timing(now: datetime, zone: ZoneInfo, policy: Policy) -> DigestTiming:
    """The local date whose digest is due at `now` (None before the hour), and when next."""
    local = now.astimezone(zone)
    today = local.date()
    start_today = local_time_of_day(today, policy.digest.send_from, zone)
    if now < start_today:
        return DigestTiming(None, start_today)
    tomorrow = today + timedelta(days=1)
    return DigestTiming(today, local_time_of_day(tomorrow, policy.digest.send_from, zone))


def digest_notice(
    reseller_id: str, day: date, groups: tuple[Group, ...],
    suppressed: Sequence[Mapping[str, str]] = (),
) -> Notice | None:
    """The day's digest, or None when every group is empty and no contact of the
    reseller is suppressed (`suppressed`: who, address, reason, status, since)."""
    if all(group.count == 0 for group in groups) and not suppressed:
        return None
    facts: dict[str, Any] = {
        "date": day.isoformat(),
        "groups": [{"key": g.key, "count": g.count, "entries": list(g.entries),
                    "more": g.count - len(g.entries)} for g in groups],
    }
    if suppressed:
        facts["suppressed"] = [dict(contact) for contact in suppressed]
    return Notice("reseller_digest", reseller_id, day.isoformat(), day, facts)
