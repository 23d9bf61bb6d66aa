"""Per-record evaluation: snapshot in, rule, decisions into the batch.

Each function handles one claimed row; a RecordError (data the rules cannot read) is
raised to the pass, which names the record, skips it and goes on with the others.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from worker.config.policy import Policy
from worker.errors import RecordError
from worker.passes.effects import Batch
from worker.passes.snapshots import (
    ResellerInfo,
    code_of,
    customer_info,
    invitation_of,
    standing_of,
    subscription_state,
    zone_of,
)
from worker.rules.calendar import local_midnight
from worker.rules.codes import evaluate_code
from worker.rules.invitations import evaluate_invitation
from worker.rules.payments import Invoice, evaluate_payment
from worker.rules.subscriptions import evaluate_subscription

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def _reseller(resellers: dict[str, ResellerInfo], reseller_id: str, what: str) -> ResellerInfo:
    try:
        return resellers[reseller_id]
    except KeyError:
        raise RecordError(f"{what}: unknown reseller {reseller_id!r}") from None


def _update_changed(batch: Batch, table: str, row: Any, **values: Any) -> None:
    """Write only the columns whose value moved: an index is rewritten only when one of
    its columns is in the UPDATE, so unchanged columns would cost index writes for nothing."""
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    if changed:
        batch.update(table, row.id, **changed)


def _check_at(day: date | None, zone: Any) -> datetime:
    return local_midnight(day, zone) if day is not None else FAR_FUTURE


def subscription(
    row: Any, batch: Batch, resellers: dict[str, ResellerInfo], policy: Policy
) -> None:
    customer = customer_info(row)
    reseller = _reseller(resellers, customer.reseller_id, f"subscription {row.id}")
    today = batch.moment.astimezone(customer.zone).date()
    result = evaluate_subscription(subscription_state(row), today, policy)
    state = result.state
    _update_changed(
        batch, "subscriptions", row, status=state.status, status_since=state.status_since,
        anniversary_date=state.anniversary_date, current_term_months=state.term_months,
        first_term_extended=state.first_term_extended,
        renewal_spent_through=state.renewal_spent_through,
        pending_term_months=state.pending_change.term_months if state.pending_change else None,
        pending_due_ad=state.pending_change.due_ad if state.pending_change else None,
        bucket=result.bucket, next_check_at=_check_at(result.next_check_on, customer.zone),
        error=None,
    )
    batch.record("subscription", row.id, result.changes, customer_id=row.customer_id,
                 reseller_id=customer.reseller_id, anniversary_date=state.anniversary_date)
    context = {
        "customer": customer.public(),
        "subscription": {"id": row.id, "product": row.product, "licences": row.licences,
                         "start_date": row.start_date.isoformat(),
                         "term_months": state.term_months, "auto_renew": bool(row.auto_renew),
                         "anniversary_date": state.anniversary_date.isoformat()},
    }
    for notice in result.notices:
        batch.queue(notice, customer, reseller, context)
    for family, key in result.live.items():
        batch.keep_only(row.id, family, key)


def customer(
    row: Any, invoices: list[Invoice], batch: Batch, resellers: dict[str, ResellerInfo],
    policy: Policy,
) -> None:
    info = customer_info(row)
    reseller = _reseller(resellers, info.reseller_id, f"customer {row.id}")
    today = batch.moment.astimezone(info.zone).date()
    payment = evaluate_payment(row.id, standing_of(row), tuple(invoices), today, policy)
    invitation = evaluate_invitation(row.id, invitation_of(row), today, info.zone, policy)
    standing = payment.standing
    checks = [day for day in (payment.next_check_on, invitation.next_check_on) if day]
    _update_changed(
        batch, "customers", row, payment_standing=standing.standing,
        payment_episode=standing.episode, payment_since=standing.since,
        late_notice_barred=standing.late_barred,
        next_check_at=_check_at(min(checks) if checks else None, info.zone), error=None,
    )
    batch.record("customer", row.id, payment.changes, reseller_id=info.reseller_id,
                 account_state=row.account_state)
    context = {"customer": info.public()}
    for notice in payment.notices:
        batch.queue(notice, info, reseller, context)
    if invitation.notice is not None:
        batch.queue(invitation.notice, info, reseller, context)
    batch.keep_only(row.id, "payment", payment.live_key)
    batch.keep_only(row.id, "invitation", invitation.notice.key if invitation.notice else None)


def code(row: Any, batch: Batch, resellers: dict[str, ResellerInfo], policy: Policy) -> None:
    info = customer_info(row)
    reseller = _reseller(resellers, row.reseller_id, f"code {row.id}")
    zone = zone_of(reseller.timezone, f"reseller {reseller.id}")
    result = evaluate_code(code_of(row), batch.moment, zone, policy)
    _update_changed(batch, "reseller_change_codes", row, status=result.status,
                    next_check_at=result.next_check or FAR_FUTURE, error=None)
    batch.record("code", row.id, result.changes, customer_id=row.customer_id,
                 reseller_id=row.reseller_id)
    context = {"customer": info.public(), "code": {"id": row.id}}
    for notice in result.notices:
        batch.queue(notice, info, reseller, context)
    batch.keep_only(row.id, "code", result.live_key)
