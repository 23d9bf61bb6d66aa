"""Invitation reminders (docs/rules.md): 7 and 14 local days after the invitation, if pending."""


from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from worker.config.policy import Policy
from worker.rules.invitations import Invitation, InvitationResult, evaluate_invitation

SENT_AT = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
SENT_ON = date(2027, 1, 4)
PARIS = ZoneInfo("Europe/Paris")
PENDING = Invitation("pending", SENT_AT)


def days_after(days: int) -> date:
    return SENT_ON + timedelta(days=days)


def reminder(invitation: Invitation | None, today: date, policy: Policy,
             zone: ZoneInfo = PARIS) -> InvitationResult:
    return evaluate_invitation("c1", invitation, today, zone, policy)


def daily_keys(until: int, policy: Policy) -> dict[int, set[tuple[str, str, str]]]:
    """Once-keys first produced on each day, with one pass a day from the invitation."""
    seen: set[tuple[str, str, str]] = set()
    new: dict[int, set[tuple[str, str, str]]] = {}
    for number in range(until + 1):
        result = reminder(PENDING, days_after(number), policy)
        keys = {result.notice.key} if result.notice else set()
        new[number] = keys - seen
        seen |= keys
    return new


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (0, set()),
        (6, set()),
        (7, {("invitation_reminder", "c1", "2027-01-04T10:00:00+00:00/7")}),
        (8, set()),
        (13, set()),
        (14, {("invitation_reminder", "c1", "2027-01-04T10:00:00+00:00/14")}),
        (15, set()),
        (40, set()),
    ],
)
def test_a_pending_invitation_is_reminded_seven_and_fourteen_days_after(
    day: int, expected: set[tuple[str, str, str]], policy: Policy
) -> None:
    """One reminder per offset, keyed by the invitation time and the offset."""
    assert expected == daily_keys(40, policy)[day]


@pytest.mark.parametrize(
    "invitation",
    [Invitation("accepted", SENT_AT), None],
    ids=["accepted", "no-invitation"],
)
def test_no_reminder_unless_the_invitation_is_still_pending(
    invitation: Invitation | None, policy: Policy
) -> None:
    """Acceptance overtakes any reminder, queued or due."""
    result = reminder(invitation, days_after(14), policy)
    assert (None, None) == (result.notice, result.next_check_on)


def test_after_a_gap_only_the_latest_reminder_is_created(policy: Policy) -> None:
    """Both reminders fell due since the last pass: only the 14-day one is wanted."""
    result = reminder(PENDING, days_after(20), policy)
    assert result.notice is not None
    assert ("2027-01-04T10:00:00+00:00/14", days_after(14)) == (
        result.notice.occasion, result.notice.occasion_date)


@pytest.mark.parametrize(
    ("day", "expected"),
    [(44, "2027-01-04T10:00:00+00:00/14"), (45, None)],
    ids=["14-day-reminder-30-days-back", "31-days-back"],
)
def test_an_old_invitation_gets_no_reminder_beyond_the_horizon(
    day: int, expected: str | None, policy: Policy
) -> None:
    """A reminder whose day lies more than 30 days before T is not created."""
    result = reminder(PENDING, days_after(day), policy)
    assert expected == (result.notice.occasion if result.notice else None)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("America/Los_Angeles", "/7"), ("Pacific/Auckland", None)],
    ids=["los-angeles-sent-on-4-jan", "auckland-sent-on-5-jan"],
)
def test_reminder_days_are_counted_on_the_customers_local_dates(
    zone: str, expected: str | None, policy: Policy
) -> None:
    """Sent at 2027-01-04T23:30Z: 4 January in LA, 5 January in Auckland."""
    invitation = Invitation("pending", datetime(2027, 1, 4, 23, 30, tzinfo=UTC))
    result = reminder(invitation, date(2027, 1, 11), policy, ZoneInfo(zone))
    assert expected == (result.notice.occasion[-2:] if result.notice else None)


def test_a_pending_invitation_is_looked_at_again_on_each_reminder_day(policy: Policy) -> None:
    """The next check is the next reminder day, and none after the last."""
    assert [days_after(7), days_after(14), None] == [
        reminder(PENDING, days_after(day), policy).next_check_on for day in (1, 7, 14)]


def test_the_reminder_tells_when_the_invitation_was_sent_and_how_long_ago(
    policy: Policy,
) -> None:
    """What the template reads; between reminders there is no notice at all (None)."""
    result = reminder(PENDING, days_after(15), policy)
    assert result.notice is not None
    assert {"invited_on": "2027-01-04", "days_since": 14} == result.notice.facts
    assert None is reminder(PENDING, days_after(3), policy).notice
