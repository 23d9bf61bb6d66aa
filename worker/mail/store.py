"""The notifications table as the mail drain sees it: claims with a lease, messages kept,
outcomes written with their events, leases given back.

Claims. A batch is claimed in one statement: rows waiting (`queued`, `retrying`), due
(`not_before` empty or at most T) and not leased by another process get the drain's
token and a lease (PostgreSQL picks them with FOR UPDATE SKIP LOCKED; SQLite's BEGIN
IMMEDIATE serialises the conditional UPDATE). Each claim counts in `unsettled_claims`;
a notice claimed more than `hold_after` times without an outcome recorded is `held`
instead (worker.db.leases).

Records. A notice is marked `sent` only after the server accepted it; `sent` is written
whatever happened to the row meanwhile (it is a fact), other outcomes only to rows still
waiting, so a notice cancelled while in flight stays cancelled. Each final state gets
its event in the same transaction (worker.events).

Suppressed addresses (worker.mail.suppressions) are read with the claim: such a
recipient's result is `suppressed` and it is not sent to.

Messages are kept in `notification_messages` while the notice waits (apart from its row,
which claims and outcomes rewrite); those of notices in a final state are deleted by the
next pass (`forget_messages`).

Imports: worker.mail.decisions, worker.mail.compose, worker.events, worker.db.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)

from worker.db.leases import extend_leases, hold, release_leases
from worker.db.pipeline import pipelined
from worker.db.schema import MESSAGES, NOTIFICATIONS
from worker.events import record_final_notices, record_sent_notices
from worker.mail.compose import Builder, build_for
from worker.mail.decisions import FINAL, R_SUPPRESSED, WAITING, Due, Settlement
from worker.mail.messages import UnsafeHeader
from worker.mail.suppressions import suppressed_among

log = structlog.get_logger("worker.mail")


_CLAIMED = (
    NOTIFICATIONS.c.id, NOTIFICATIONS.c.kind, NOTIFICATIONS.c.audience,
    NOTIFICATIONS.c.occasion_date, NOTIFICATIONS.c.timezone, NOTIFICATIONS.c.recipients,
    NOTIFICATIONS.c.attempts, NOTIFICATIONS.c.last_error, NOTIFICATIONS.c.recipient_results,
    NOTIFICATIONS.c.message_id, NOTIFICATIONS.c.bounce_token,
    NOTIFICATIONS.c.created_at, NOTIFICATIONS.c.not_before,
    NOTIFICATIONS.c.ref, NOTIFICATIONS.c.reseller_id,
    NOTIFICATIONS.c.payload[("reseller", "email")].as_string().label("sender"),
)


def _due_condition(moment: datetime, now: datetime) -> Any:
    columns = NOTIFICATIONS.c
    return and_(columns.status.in_(WAITING),
                or_(columns.not_before.is_(None), columns.not_before <= moment),
                or_(columns.claimed_until.is_(None), columns.claimed_until <= now))


def claim(
    connection: Connection, moment: datetime, now: datetime, token: str, lease: timedelta,
    limit: int, hold_after: int = 3,
) -> list[Due]:
    """Lease up to `limit` due notifications to `token` (see the module docstring).

    The rows are picked in a materialised CTE: PostgreSQL runs a `LIMIT … FOR UPDATE SKIP
    LOCKED` subquery inside `UPDATE … WHERE id IN (…)` again as the update goes on, and
    each run skips the rows just updated, so that form leased every due row at once."""
    due = _due_condition(moment, now)
    columns = NOTIFICATIONS.c
    picked = (select(columns.id).where(due).order_by(columns.id).limit(limit)
              .with_for_update(skip_locked=True).cte("picked")
              .prefix_with("MATERIALIZED", dialect="postgresql"))
    statement = (update(NOTIFICATIONS).where(columns.id.in_(select(picked.c.id)), due)
                 .values(claim_token=token, claimed_until=now + lease,
                         unsettled_claims=columns.unsettled_claims + 1)
                 .returning(*_CLAIMED, columns.unsettled_claims))
    claimed = connection.execute(statement).all()
    hold(connection, NOTIFICATIONS,
         [row.id for row in claimed if row.unsettled_claims > hold_after], hold_after)
    rows = [row for row in claimed if row.unsettled_claims <= hold_after]
    messages = _messages(connection, [row.id for row in rows])
    suppressed = suppressed_among(connection, [a for row in rows for a in row.recipients or ()])
    return sorted((_due_of(row, messages.get(row.id), suppressed, now) for row in rows),
                  key=lambda notice: notice.id)


def _messages(connection: Connection, ids: Sequence[int]) -> dict[int, bytes]:
    if not ids:
        return {}
    query = select(MESSAGES.c.notification_id, MESSAGES.c.message_bytes).where(
        MESSAGES.c.notification_id.in_(ids))
    return {row.notification_id: row.message_bytes for row in connection.execute(query)}


def _due_of(row: Row[Any], message: bytes | None = None,
            suppressed: Mapping[str, Any] | None = None, now: datetime | None = None) -> Due:
    results = dict(row.recipient_results or {})
    for address in row.recipients or ():
        found = (suppressed or {}).get(address.lower())
        if found is not None and results.get(address, {}).get("status") not in FINAL:
            results[address] = {"status": R_SUPPRESSED, "code": found.status,
                                "reply": f"suppressed since {found.since.isoformat()}: "
                                         f"{found.reason}"[:500],
                                "at": (now or found.since).isoformat()}
    return Due(id=row.id, kind=row.kind, audience=row.audience,
               occasion_date=row.occasion_date, timezone=row.timezone,
               recipients=tuple(row.recipients or ()), attempts=row.attempts,
               last_error=row.last_error, results=results,
               sender=row.sender, message_bytes=message,
               message_id=row.message_id,
               due_since=max(row.created_at, row.not_before or row.created_at),
               ref=row.ref, reseller_id=row.reseller_id, bounce_token=row.bounce_token)


def waiting_rows(connection: Connection, moment: datetime) -> list[Due]:
    """Due notifications, read without claiming and without their messages (for dry
    runs: the send window is all they decide)."""
    query = select(*_CLAIMED).where(_due_condition(moment, moment)).order_by(
        NOTIFICATIONS.c.id)
    return [_due_of(row) for row in connection.execute(query)]


def _still_waiting() -> Any:
    """`status IN ('queued', 'retrying')`, in a form executemany accepts."""
    return or_(*(NOTIFICATIONS.c.status == status for status in WAITING))


def _released(**values: Any) -> dict[str, Any]:
    """The row's lease given back after a decision about it: its claims are settled."""
    return {**values, "claim_token": None, "claimed_until": None, "unsettled_claims": 0}


def write_waits(connection: Connection, waits: Sequence[tuple[int, datetime]]) -> None:
    if waits:
        statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
                     .values(_released(not_before=bindparam("b_at"))))
        connection.execute(statement, [{"b_id": i, "b_at": at} for i, at in waits])


def write_skips(connection: Connection, skips: Sequence[tuple[int, str]], now: datetime) -> None:
    if skips:
        statement = (update(NOTIFICATIONS)
                     .where(NOTIFICATIONS.c.id == bindparam("b_id"), _still_waiting())
                     .values(_released(status="cancelled", last_error=bindparam("b_reason"))))
        connection.execute(statement, [{"b_id": i, "b_reason": r} for i, r in skips])
        record_final_notices(connection, {i: "cancelled" for i, _ in skips}, now)


def write_built(connection: Connection, built: Mapping[int, tuple[bytes, str]]) -> None:
    """Keep built messages, so a retry or another process sends the very same bytes."""
    if built:
        statement = (update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
                     .values(message_id=bindparam("b_mid")))
        connection.execute(statement, [{"b_id": i, "b_mid": mid}
                                       for i, (_data, mid) in built.items()])
        connection.execute(delete(MESSAGES).where(MESSAGES.c.notification_id.in_(built)))
        connection.execute(insert(MESSAGES), [{"notification_id": i, "message_bytes": data}
                                              for i, (data, _mid) in built.items()])


def forget_messages(connection: Connection) -> int:
    """Delete the messages of notices now in a final state: they are not sent again.
    Each real pass calls it as it opens. The drain leaves them: deleting a message
    costs about as much as recording its outcome, and a drain's time is the sending's."""
    final = exists().where(NOTIFICATIONS.c.id == MESSAGES.c.notification_id,
                           NOTIFICATIONS.c.status.not_in(WAITING))
    return int(connection.execute(delete(MESSAGES).where(final)).rowcount or 0)


def _settlement_update(*, only_waiting: bool) -> Any:
    values = _released(
        status=bindparam("b_status"), attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"), recipient_results=bindparam("b_results"),
        not_before=bindparam("b_not_before"), sent_at=bindparam("b_sent_at"),
    )
    statement = update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == bindparam("b_id"))
    if only_waiting:
        statement = statement.where(_still_waiting())
    return statement.values(values)


# Built once: making an UPDATE costs about as much as running it for a few rows.
_RECORD_SENT = _settlement_update(only_waiting=False)
_RECORD_IF_WAITING = _settlement_update(only_waiting=True)


def write_settlements(
    connection: Connection, settlements: Sequence[Settlement], now: datetime
) -> None:
    """Record outcomes and release the leases. `sent` is written whatever happened to
    the row meanwhile (it is a fact); other outcomes only to rows still waiting, so a
    notice cancelled while in flight stays cancelled. Each final state written gets its
    event in this transaction (worker.events), stamped `now` (the real time). Rows are
    written in id order, the order the claim locks them in."""
    told = all(s.status == "sent" and s.facts is not None for s in settlements)
    in_order = sorted(settlements, key=lambda settlement: settlement.id)  # one lock order
    with pipelined(connection) if told else contextlib.nullcontext():
        _write_settlements(connection, in_order, now)


def _write_settlements(
    connection: Connection, settlements: Sequence[Settlement], now: datetime
) -> None:
    sent = [s for s in settlements if s.status == "sent"]
    other = [s for s in settlements if s.status != "sent"]
    if sent:
        connection.execute(_RECORD_SENT, [_params(s) for s in sent])
    if other:
        connection.execute(_RECORD_IF_WAITING, [_params(s) for s in other])
    _keep_sealed(connection, [s for s in other if s.sealed is not None])
    # One event per notice now in a final state (none where the update did not apply):
    # a `sent` always applies, and its facts came with the claim; the others are read back.
    told = [s for s in sent if s.facts is not None]
    record_final_notices(connection, {s.id: s.status for s in settlements
                                      if s.final and not (s.status == "sent" and s.facts)},
                         now)
    record_sent_notices(connection, [
        {**(s.facts or {}), "id": s.id, "recipient_results": s.results, "sent_at": s.sent_at}
        for s in told], now)


def _keep_sealed(connection: Connection, settlements: Sequence[Settlement]) -> None:
    """A signed message to retry replaces the stored one: the next attempt sends it as is
    (same Date, same signature: worker.mail.dkim)."""
    if settlements:
        statement = (update(MESSAGES).where(MESSAGES.c.notification_id == bindparam("b_id"))
                     .values(message_bytes=bindparam("b_data")))
        connection.execute(statement, [{"b_id": s.id, "b_data": s.sealed} for s in settlements])


def _params(settlement: Settlement) -> dict[str, Any]:
    return {"b_id": settlement.id, "b_status": settlement.status,
            "b_attempts": settlement.attempts, "b_error": settlement.last_error,
            "b_results": settlement.results, "b_not_before": settlement.not_before,
            "b_sent_at": settlement.sent_at}


@dataclass(frozen=True, slots=True)
class BuildFailure:
    """Why a message could not be built; `permanent` when the row's own data is at
    fault (an unsafe address: retrying the same row cannot help), else a template or
    code fault that a fix may cure before retries run out."""

    reason: str
    permanent: bool


def build_messages(
    connection: Connection, ids: Sequence[int], build: Builder = build_for
) -> tuple[dict[int, tuple[bytes, str]], dict[int, BuildFailure]]:
    """Build the messages of notifications `ids` and keep them in the database.

    Returns what was built ({id: (bytes, Message-ID)}) and what could not be, and why:
    one broken notice never stops the others. A pass may call this right after
    queueing (building once, at queue time); the drain calls it for whatever it claims
    without a message."""
    built: dict[int, tuple[bytes, str]] = {}
    failed: dict[int, BuildFailure] = {}
    if not ids:
        return built, failed
    for row in connection.execute(select(NOTIFICATIONS).where(NOTIFICATIONS.c.id.in_(ids))):
        try:
            built[row.id] = build(row)
        except Exception as error:  # one broken notice never stops the others
            log.warning("message_build_failed", id=row.id, error=repr(error))
            failed[row.id] = BuildFailure(
                f"cannot build the message: {type(error).__name__}: {error}",
                isinstance(error, UnsafeHeader))
    write_built(connection, built)
    return built, failed


def extend_lease(connection: Connection, token: str, until: datetime) -> int:
    """Keep the notices `token` still holds until `until` (a long, slow drain); rows being
    recorded are skipped (worker.db.leases)."""
    return extend_leases(connection, NOTIFICATIONS, token, until)


def release(connection: Connection, token: str, unrecorded: Sequence[int] = ()) -> int:
    """Give back every lease of `token` still held (a drain interrupted half-way)."""
    return release_leases(connection, NOTIFICATIONS, token, unrecorded)
