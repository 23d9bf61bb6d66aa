"""One pass: every rule at one moment T, applied once, in chunks of claimed records.

load -> decide -> apply. Each chunk is claimed and written in its own transaction, so a
pass interrupted half-way leaves whole chunks behind and the next pass resumes. A record
the rules cannot read is named in the summary and skipped; the others go on. A dry run
does all of it inside one transaction that is rolled back: nothing is written, not even
the record of the pass.

Its lifecycle (`worker.passes.ledger`): the pass's row records who runs it and a
heartbeat; a stop request (`stop`) is looked at between chunks, and the pass is then
closed `interrupted` without delivering; a pass that fails is closed `failed` with its
error (`PassFailed` says whether that could be written); dead passes of other processes
are marked `abandoned` when a pass opens.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, Row

from worker.config.policy import Policy
from worker.db.schema import CODES, CUSTOMERS, RESELLERS, SUBSCRIPTIONS
from worker.errors import RecordError, describe
from worker.mail.compose import builder_for
from worker.mail.drain import DeliveryCounts, plan_due
from worker.mail.store import build_messages, forget_messages
from worker.passes import evaluate
from worker.passes.digests import digest_groups, suppressed_contacts
from worker.passes.effects import Batch, write, write_events
from worker.passes.ledger import (
    Heartbeat,
    Runner,
    close_pass,
    mark_abandoned,
    open_pass,
)
from worker.passes.snapshots import (
    ResellerInfo,
    claim_codes,
    claim_customers,
    claim_subscriptions,
    due_ids,
    invoices_of,
    load_resellers,
    zone_of,
)
from worker.passes.summary import PassSummary
from worker.rules.digest import digest_notice, digest_timing
from worker.support import crashpoints
from worker.support.instruments import record_pass
from worker.support.stopping import Stop, requested

log = structlog.get_logger("worker.pass")
TABLES = {"subscriptions": SUBSCRIPTIONS, "customers": CUSTOMERS,
          "reseller_change_codes": CODES, "resellers": RESELLERS}
CHUNK = 500
Progress = Callable[[str, int, int], None]
Deliver = Callable[[datetime], DeliveryCounts]


class PassFailed(Exception):
    """A pass stopped on an error. `closed`: its row says `failed` (else it is still
    `running`, the database being away: `worker.passes.ledger.close_failed` later)."""

    def __init__(self, pass_id: int, error: str, *, closed: bool) -> None:
        state = "closed as failed" if closed else "left running: the database is away"
        super().__init__(f"pass {pass_id} failed ({state}): {error}")
        self.pass_id, self.error, self.closed = pass_id, error, closed


def run_pass(
    engine: Engine,
    policy: Policy,
    moment: datetime,
    *,
    dry_run: bool = False,
    trigger: str = "once",
    clock: Callable[[], datetime] | None = None,
    progress: Progress | None = None,
    deliver: Deliver | None = None,
    stop: Stop = None,
    runner: Runner | None = None,
) -> PassSummary:
    """Evaluate every rule at `moment` and apply the decisions (see the module docstring).

    `clock` gives the real time, recorded as the pass's start and finish only; every rule
    is judged at `moment`. `deliver`, when given, drains the outbox at `moment` once the
    rules are applied (messages are built when queued); a dry run only counts what it
    would send. Without it (forecasts) notices stay queued. `stop` is looked at between
    chunks: once set, the pass ends `interrupted` after the chunk in hand.
    """
    summary = PassSummary(as_of=moment, dry_run=dry_run)
    real_time = clock or (lambda: moment)
    build = deliver is not None and not dry_run
    watched = not dry_run and trigger != "forecast"  # a real pass: heartbeat, metrics
    began = time.monotonic()
    with engine.connect() as connection:
        outer = connection.begin() if dry_run else None
        try:
            summary.pass_id = _open_pass(connection, policy, moment, real_time(), dry_run,
                                         watched, trigger, runner or Runner.this_process())
            with contextlib.ExitStack() as alive:
                if watched:
                    alive.enter_context(Heartbeat(
                        engine, summary.pass_id, real_time,
                        timedelta(seconds=policy.schedule.heartbeat_seconds)))
                try:
                    _run_stages(connection, summary, policy, moment, dry_run, progress,
                                build, deliver, stop, real_time)
                    if dry_run:
                        _close_pass(connection, summary, dry_run, real_time())
                    else:  # the drain may have outlived a database restart: ask the pool
                        with engine.connect() as fresh:
                            _close_pass(fresh, summary, dry_run, real_time())
                except Exception as error:
                    if dry_run:
                        raise
                    failure = _failed_pass(engine, connection, summary, error, real_time())
                    if watched:
                        record_pass("failed", time.monotonic() - began)
                    raise failure from error
        finally:
            if outer is not None:
                outer.rollback()
    if watched:
        record_pass(summary.outcome, time.monotonic() - began)
    event = "pass_interrupted" if summary.interrupted else "pass_finished"
    log.info(event, **summary.counts(), as_of=moment.isoformat(), dry_run=dry_run,
             outcome=summary.outcome, pass_id=summary.pass_id)
    return summary


def _run_stages(
    connection: Connection, summary: PassSummary, policy: Policy, moment: datetime,
    dry_run: bool, progress: Progress | None, build: bool, deliver: Deliver | None,
    stop: Stop, real_time: Callable[[], datetime],
) -> None:
    if not _evaluate_all(connection, summary, policy, moment, dry_run, progress, build, stop,
                         real_time):
        summary.outcome = "interrupted"
        return
    if dry_run and deliver is not None:
        summary.delivery.update({f"would_{what}": n for what, n in
                                 plan_due(connection, policy, moment).items()})
    elif deliver is not None:
        _deliver(summary, deliver, moment)
    if requested(stop):  # the drain returned early: messages left for the next drain
        summary.outcome = "interrupted"


def _failed_pass(
    engine: Engine, connection: Connection, summary: PassSummary, error: Exception,
    finished: datetime,
) -> PassFailed:
    """Close the pass `failed` with its error, from a fresh connection (the pass's own
    may be the one that broke); say whether that could be written."""
    reason = describe(error)
    summary.outcome = "failed"
    with contextlib.suppress(Exception):
        connection.rollback()  # SQLite: give back the write lock a failed read may hold
    pass_id = summary.pass_id or 0
    try:
        with engine.begin() as fresh:
            close_pass(fresh, pass_id, "failed", finished, counts=summary.counts(),
                       errors=summary.errors, error=reason)
    except Exception as second:
        log.warning("pass_failed", pass_id=pass_id, error=reason, closed=False,
                    close_error=describe(second))
        return PassFailed(pass_id, reason, closed=False)
    log.warning("pass_failed", pass_id=pass_id, error=reason, closed=True)
    return PassFailed(pass_id, reason, closed=True)


def _deliver(summary: PassSummary, deliver: Deliver, moment: datetime) -> None:
    counts = deliver(moment)
    summary.transport = counts.transport
    summary.delivery.update(counts.as_dict())
    summary.errors += counts.errors


def _evaluate_all(
    connection: Connection, summary: PassSummary, policy: Policy, moment: datetime,
    dry_run: bool, progress: Progress | None, build: bool, stop: Stop,
    real_time: Callable[[], datetime],
) -> bool:
    """Every stage, chunk by chunk; False when a stop request ended it early."""
    resellers = load_resellers(connection)
    stages: Sequence[tuple[str, Any, Callable[..., None]]] = (
        ("subscriptions", SUBSCRIPTIONS, _subscriptions),
        ("customers", CUSTOMERS, _customers),
        ("reseller_change_codes", CODES, _codes),
    )
    for name, table, handler in stages:
        ids = due_ids(connection, table, moment)
        crashpoints.reached("after_select")
        if not dry_run:
            connection.commit()
        for done, chunk in enumerate(_chunks(ids), start=1):
            if requested(stop):
                return False
            batch = Batch(summary.pass_id or 0, moment, real_time())
            with _transaction(connection, dry_run):
                handler(connection, chunk, batch, summary, resellers, policy)
                _write(connection, batch, summary, build, policy)
                crashpoints.reached("in_chunk")
            if progress is not None:
                progress(name, min(done * CHUNK, len(ids)), len(ids))
    if requested(stop):
        return False
    with _transaction(connection, dry_run):
        batch = Batch(summary.pass_id or 0, moment, real_time())
        _digests(connection, batch, summary, resellers, policy)
        _write(connection, batch, summary, build, policy)
    return True


def _write(connection: Connection, batch: Batch, summary: PassSummary, build: bool,
           policy: Policy) -> None:
    """Write a chunk's decisions; build the new notices' messages once, as they are queued;
    then the chunk's events, last (they hold the feed's lock until commit)."""
    written = write(connection, batch, TABLES)
    if build:
        build_messages(connection, written.queued_ids, builder_for(policy))
    write_events(connection, written)
    summary.absorb(batch, written)


@contextlib.contextmanager
def _transaction(connection: Connection, dry_run: bool) -> Iterator[None]:
    if dry_run:
        yield
        return
    with connection.begin():
        yield


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _each(
    rows: Sequence[Row[Any]], record_type: str, table: str, batch: Batch,
    summary: PassSummary, evaluate_one: Callable[[Row[Any]], None],
) -> None:
    """Evaluate row by row; a broken record is named, marked and skipped.

    The reason is stored on the record (`error`, counted by `status`). It is logged as a
    warning, with the traceback of an unexpected error, the first time only: a later
    pass that meets the same record failing the same way names it in its summary and
    logs one debug line, instead of a traceback at every pass."""
    for row in rows:
        summary.evaluated[record_type] += 1
        try:
            evaluate_one(row)
        except RecordError as error:
            _failed(batch, summary, (record_type, table, row), str(error), None)
        except Exception as error:  # one broken record never stops the others
            _failed(batch, summary, (record_type, table, row),
                    f"{record_type} {row.id}: {type(error).__name__}: {error}", error)


def _failed(
    batch: Batch, summary: PassSummary, what: tuple[str, str, Row[Any]], reason: str,
    unexpected: Exception | None,
) -> None:
    record_type, table, row = what
    reason = " ".join(reason.split())[:2000]  # one line, whatever the error said
    if getattr(row, "error", None) == reason:
        log.debug("record_still_skipped", record=record_type, id=row.id, reason=reason)
    elif unexpected is not None:
        log.warning("record_skipped", record=record_type, id=row.id, reason=reason,
                    exc_info=unexpected)
    else:
        log.warning("record_skipped", record=record_type, id=row.id, reason=reason)
    summary.errors.append({"record": record_type, "id": row.id, "reason": reason})
    batch.update(table, row.id, error=reason)


def _subscriptions(
    connection: Connection, ids: list[str], batch: Batch, summary: PassSummary,
    resellers: dict[str, ResellerInfo], policy: Policy,
) -> None:
    rows = claim_subscriptions(connection, ids, batch.moment)
    _each(rows, "subscription", "subscriptions", batch, summary,
          lambda row: evaluate.subscription(row, batch, resellers, policy))


def _customers(
    connection: Connection, ids: list[str], batch: Batch, summary: PassSummary,
    resellers: dict[str, ResellerInfo], policy: Policy,
) -> None:
    rows = claim_customers(connection, ids, batch.moment)
    invoices = invoices_of(connection, [row.id for row in rows])
    _each(rows, "customer", "customers", batch, summary,
          lambda row: evaluate.customer(row, invoices[row.id], batch, resellers, policy))


def _codes(
    connection: Connection, ids: list[str], batch: Batch, summary: PassSummary,
    resellers: dict[str, ResellerInfo], policy: Policy,
) -> None:
    rows = claim_codes(connection, ids, batch.moment)
    _each(rows, "code", "reseller_change_codes", batch, summary,
          lambda row: evaluate.code(row, batch, resellers, policy))


def _digests(
    connection: Connection, batch: Batch, summary: PassSummary,
    resellers: dict[str, ResellerInfo], policy: Policy,
) -> None:
    due = set(due_ids(connection, RESELLERS, batch.moment, "next_digest_at"))
    for reseller in resellers.values():
        if reseller.id not in due:
            continue
        summary.evaluated["reseller"] += 1
        try:
            zone = zone_of(reseller.timezone, f"reseller {reseller.id}")
        except RecordError as error:
            summary.errors.append({"record": "reseller", "id": reseller.id,
                                   "reason": str(error)})
            continue
        timing = digest_timing(batch.moment, zone, policy)
        if timing.local_date is not None:
            groups = digest_groups(connection, reseller.id, timing.local_date,
                                   policy.buckets.recently_lapsed_days,
                                   policy.digest.max_listed_per_group)
            notice = digest_notice(reseller.id, timing.local_date, groups, suppressed_contacts(
                connection, reseller.id, policy.digest.max_listed_per_group))
            if notice is not None:
                batch.queue(notice, None, reseller, {})
        batch.update("resellers", reseller.id, next_digest_at=timing.next_at)


def _open_pass(
    connection: Connection, policy: Policy, moment: datetime, started_at: datetime,
    dry_run: bool, watched: bool, trigger: str, runner: Runner,
) -> int:
    """Open the pass's row; a real pass first marks the dead passes of others (a
    forecast's private copy leaves them to the real passes)."""
    with _transaction(connection, dry_run):
        if watched:
            mark_abandoned(connection, started_at, runner,
                           timedelta(minutes=policy.schedule.abandon_after_minutes))
            forget_messages(connection)  # of the notices settled since the last pass
        return open_pass(connection, moment, started_at, dry_run=dry_run, trigger=trigger,
                         runner=runner)


def _close_pass(
    connection: Connection, summary: PassSummary, dry_run: bool, finished: datetime
) -> None:
    if summary.outcome == "running":
        summary.outcome = "partial" if summary.errors else "done"
    with _transaction(connection, dry_run):
        close_pass(connection, summary.pass_id or 0, summary.outcome, finished,
                   counts=summary.counts(), errors=summary.errors)
