"""Reseller-change codes (docs/rules.md, "Reseller-change codes"): valid 72 hours, single use.

Judged to the minute at the pass moment T: `used` once used (before expiry), else
`expired` from issue + 72 h. From 24 h before expiry an unused code warns the customer's
admins (`reseller_code_expiring`); at expiry the requesting reseller learns it may send
a new one (`reseller_code_expired`). Only the latest of the two is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from worker.config.policy import Policy
from worker.rules.model import Change, Notice

ACTIVE = "active"
USED = "used"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Code:
    id: str
    issued_at: datetime
    used_at: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class CodeResult:
    status: str
    changes: tuple[Change, ...]
    notices: tuple[Notice, ...]
    live_key: tuple[str, str, str] | None
    next_check: datetime | None


def expires_at(code: Code, policy: Policy) -> datetime:
    return code.issued_at + timedelta(hours=policy.codes.valid_hours)


def evaluate_code(code: Code, now: datetime, zone: ZoneInfo, policy: Policy) -> CodeResult:
    """The code's status at `now`, and the latest code notice due; `zone` dates changes."""
    expiry = expires_at(code, policy)
    warn_from = expiry - timedelta(hours=policy.codes.expiring_notice_hours_before)
    used = code.used_at is not None and code.used_at <= now and code.used_at < expiry
    if used:
        assert code.used_at is not None
        status, since, reason = USED, code.used_at, "used"
    elif now >= expiry:
        status, since, reason = EXPIRED, expiry, "expired"
    else:
        status, since, reason = ACTIVE, code.issued_at, "issued"
    changes: tuple[Change, ...] = ()
    if status != code.status:
        changes = (Change("status", code.status, status, reason,
                          since.astimezone(zone).date(), since),)
    notice = _latest_notice(code, status, now, warn_from, expiry, zone, policy)
    checks = [moment for moment in (warn_from, expiry, code.used_at) if moment and moment > now]
    next_check = min(checks) if status == ACTIVE and checks else None
    return CodeResult(status, changes, (notice,) if notice else (),
                      notice.key if notice else None, next_check)


def _latest_notice(
    code: Code, status: str, now: datetime, warn_from: datetime, expiry: datetime,
    zone: ZoneInfo, policy: Policy,
) -> Notice | None:
    if status == USED or now < warn_from:
        return None
    kind, occasion = ("reseller_code_expired", expiry) if status == EXPIRED else (
        "reseller_code_expiring", warn_from)
    if now - occasion > timedelta(days=policy.catch_up.horizon_days):
        return None
    facts = {"issued_at": code.issued_at.isoformat(), "expires_at": expiry.isoformat()}
    return Notice(kind, code.id, code.id, occasion.astimezone(zone).date(), facts)
