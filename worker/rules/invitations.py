"""Invitation reminders (docs/rules.md, "Invitations").

A customer whose invitation is still `pending` gets `invitation_reminder` 7 and 14 days
after the invitation, counted on the customer's local dates. After a gap only the latest
reminder due is created; acceptance overtakes any still queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from worker.config.policy import Policy
from worker.rules.model import Notice, within_horizon

PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Invitation:
    status: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class InvitationResult:
    notice: Notice | None
    next_check_on: date | None


def evaluate_invitation(
    customer_id: str, invitation: Invitation | None, today: date, zone: ZoneInfo, policy: Policy
) -> InvitationResult:
    if invitation is None or invitation.status != PENDING:
        return InvitationResult(None, None)
    sent_on = invitation.sent_at.astimezone(zone).date()
    offsets = sorted(policy.invitations.reminder_days_after)
    due = [days for days in offsets if sent_on + timedelta(days=days) <= today]
    later = [sent_on + timedelta(days=days) for days in offsets if days not in due]
    notice = None
    if due:
        days = due[-1]
        on = sent_on + timedelta(days=days)
        if within_horizon(on, today, policy.catch_up.horizon_days):
            occasion = f"{invitation.sent_at.isoformat()}/{days}"
            notice = Notice("invitation_reminder", customer_id, occasion, on, {
                "invited_on": sent_on.isoformat(), "days_since": days})
    return InvitationResult(notice, min(later) if later else None)
