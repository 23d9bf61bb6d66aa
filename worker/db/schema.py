"""The tables. Rules never see these: queries turn rows into frozen snapshots.

Every derived column (status, bucket, payment standing, code status) is written by a
pass only; imports write the facts. `next_check_at` is the earliest instant at which a
record may change: a pass selects `next_check_at <= T` through its index, so its cost
follows the number of due records, not the size of the portfolio. An import resets it
to EPOCH so that the next pass looks at the record again.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.db.types import UtcDateTime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's own hook
        datetime: UtcDateTime(),
        date: Date(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Reseller(Base):
    __tablename__ = "resellers"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320))
    sender_name: Mapped[str] = mapped_column(String(300))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))
    account_managers: Mapped[list[Any]] = mapped_column(default=list)
    next_digest_at: Mapped[datetime] = mapped_column(default=EPOCH, index=True)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index(None, "reseller_id", "payment_standing"),
        Index(None, "reseller_id", "invitation_status"),
        Index(None, "reseller_id", "account_state"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    reseller_id: Mapped[str] = mapped_column(ForeignKey("resellers.id"))
    name: Mapped[str] = mapped_column(String(300))
    segment: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    managed_by: Mapped[str | None] = mapped_column(Id)
    admins: Mapped[list[Any]] = mapped_column(default=list)
    account_state: Mapped[str] = mapped_column(String(16), default="active")
    invitation_status: Mapped[str | None] = mapped_column(String(16))
    invitation_sent_at: Mapped[datetime | None]
    # Derived by passes.
    payment_standing: Mapped[str] = mapped_column(String(16), default="current")
    payment_episode: Mapped[str | None] = mapped_column(Id)
    payment_since: Mapped[date | None]
    late_notice_barred: Mapped[str | None] = mapped_column(Id)
    next_check_at: Mapped[datetime] = mapped_column(default=EPOCH, index=True)
    error: Mapped[str | None] = mapped_column(Text)


def _term_sold(context: Any) -> Any:
    """A new subscription's current term is the term sold until a pass moves it."""
    return context.get_current_parameters().get("term_months")


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index(None, "reseller_id", "bucket", "status_since"),
        Index(None, "reseller_id", "bucket", "anniversary_date", "status"),
    )

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    reseller_id: Mapped[str] = mapped_column(ForeignKey("resellers.id"))
    product: Mapped[str] = mapped_column(String(200))
    licences: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[date]
    anniversary_date: Mapped[date]
    anchor_day: Mapped[int] = mapped_column(Integer)
    # The term the portal sold, as last imported (NULL: not known since migration 0005),
    # and the worker's own term, which moves when an extended first term ends or a
    # pending change applies. Rules read only the current one.
    term_months: Mapped[int | None] = mapped_column(Integer)
    current_term_months: Mapped[int] = mapped_column(Integer, default=_term_sold)
    first_term_extended: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    renewal_ordered_on: Mapped[date | None]
    renewal_years: Mapped[int | None] = mapped_column(Integer)
    renewal_spent_through: Mapped[date | None]
    pending_term_months: Mapped[int | None] = mapped_column(Integer)
    pending_due_ad: Mapped[date | None]
    imported_pending_term_months: Mapped[int | None] = mapped_column(Integer)
    # Derived by passes.
    status: Mapped[str] = mapped_column(String(24), default="pending_start")
    status_since: Mapped[date | None]
    bucket: Mapped[str] = mapped_column(String(16), default="not_started")
    next_check_at: Mapped[datetime] = mapped_column(default=EPOCH, index=True)
    error: Mapped[str | None] = mapped_column(Text)


class PurchaseAuthorization(Base):
    __tablename__ = "purchase_authorizations"

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    requested_on: Mapped[date]
    paid_on: Mapped[date | None]


class ResellerChangeCode(Base):
    __tablename__ = "reseller_change_codes"
    __table_args__ = (Index(None, "reseller_id", "issued_at"),)

    id: Mapped[str] = mapped_column(Id, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    reseller_id: Mapped[str] = mapped_column(ForeignKey("resellers.id"))
    issued_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    # Derived by passes.
    status: Mapped[str] = mapped_column(String(16), default="active")
    next_check_at: Mapped[datetime] = mapped_column(default=EPOCH, index=True)
    error: Mapped[str | None] = mapped_column(Text)


class Pass(Base):
    """One evaluation of every rule at one moment (`as_of`).

    `outcome`: `running` while it runs, then `done`, `partial` (some records skipped),
    `interrupted` (a stop request between chunks), `failed` (with its `error`) or
    `abandoned` (its process died: a later pass saw it gone, or its heartbeat stale).
    `host`, `pid` and `heartbeat_at` (migration 0005) say who runs it and that it lives.
    """

    __tablename__ = "passes"
    __table_args__ = (Index(None, "outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    as_of: Mapped[datetime]
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class Import(Base):
    """One import that wrote something: the audit trail's reason for what it changed."""

    __tablename__ = "imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime]
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the file, hex
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Transition(Base):
    """The audit trail: every value a pass or an import changed that the rules use, with
    the date it took effect. Exactly one of `pass_id` and `import_id` is set."""

    __tablename__ = "transitions"
    __table_args__ = (Index(None, "record_type", "record_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pass_id: Mapped[int | None] = mapped_column(ForeignKey("passes.id"), index=True)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"), index=True)
    record_type: Mapped[str] = mapped_column(String(24))
    record_id: Mapped[str] = mapped_column(Id)
    field: Mapped[str] = mapped_column(String(24))
    from_value: Mapped[str | None] = mapped_column(String(64))
    to_value: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    effective_on: Mapped[date]
    effective_at: Mapped[datetime | None]


class Notification(Base):
    """A notice to one audience. The unique key makes "once" a database fact."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("kind", "ref", "occasion", "audience"),
        Index(None, "ref", "status"),
        Index(None, "status", "not_before"),
        Index(None, "bounce_token"),
        Index(None, "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str] = mapped_column(Id)
    occasion: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(16))
    occasion_date: Mapped[date]
    reseller_id: Mapped[str] = mapped_column(Id)
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    locale: Mapped[str] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime]
    pass_id: Mapped[int | None] = mapped_column(ForeignKey("passes.id"))
    not_before: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    message_id: Mapped[str | None] = mapped_column(String(200))
    # Delivery (migration 0002, worker/mail/store.py): the lease of the process sending
    # it, and the server's answer per recipient ({address: {status, code, reply, at}}).
    # The message itself is a NotificationMessage.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    recipient_results: Mapped[dict[str, Any] | None]
    # Claims in a row whose outcome was never recorded (migration 0010, worker.db.leases).
    unsettled_claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Names the notice in its envelope senders: 64 random bits (0011, worker.mail.senders).
    bounce_token: Mapped[str | None] = mapped_column(
        String(16), default=lambda: secrets.token_hex(8))


class NotificationMessage(Base):
    """A notice's message as built once, without its Date header (stamped when handed
    over), kept while the notice waits (migration 0009_messages, worker/mail/store.py).

    Apart from its notification because a claim and an outcome rewrite that row, and
    SQLite rewrites a whole row when one column changes, overflow pages included: with
    the message in the row, a claim of 200 notices wrote about 1.2 MB."""

    __tablename__ = "notification_messages"

    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True)
    message_bytes: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """The change feed (a transactional outbox): one row per change the worker made,
    written in the transaction that makes the change. `seq` only grows; `id` is the
    event's public identity (the `webhook-id` of every push of it)."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "subject_type", "subject_id", "seq"),
        # One event per final delivery state of a notice (migration 0008_events).
        Index(None, "notification_id", "type", unique=True),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(48))
    subject_type: Mapped[str] = mapped_column(String(24))
    subject_id: Mapped[str] = mapped_column(Id)
    reseller_id: Mapped[str | None] = mapped_column(Id)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]
    pass_id: Mapped[int | None] = mapped_column(ForeignKey("passes.id"))
    transition_id: Mapped[int | None] = mapped_column(ForeignKey("transitions.id"), unique=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


Seq = BigInteger().with_variant(Integer, "sqlite")


class BounceReport(Base):
    """A failure read from a report, once per (report, recipient) (worker/mail/bounces/)."""

    __tablename__ = "bounce_reports"
    __table_args__ = (UniqueConstraint("digest", "recipient"), Index(None, "notification_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(320))
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    permanent: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime]


class Suppression(Base):
    """An address no notice goes to; a lifted one keeps its row (worker/mail/suppressions.py)."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lowercase
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500))
    status: Mapped[str | None] = mapped_column(String(16))
    notification_id: Mapped[int | None] = mapped_column(Integer)
    since: Mapped[datetime]
    lifted_at: Mapped[datetime | None] = mapped_column(index=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class WebhookEndpoint(Base):
    """A receiver the worker has pushed to (migration 0007_webhooks, worker/webhooks/).

    `first_seq` is the first event it is responsible for: an endpoint configured later
    does not receive the history unless it is replayed. `enqueued_through`: every event
    up to this seq has its delivery row. A 410 Gone disables it (`disabled_at`, `_reason`)
    until its URL changes."""

    __tablename__ = "webhook_endpoints"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    first_seq: Mapped[int] = mapped_column(Seq)
    enqueued_through: Mapped[int] = mapped_column(Seq)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """One event to one endpoint: its attempts, the lease of the process pushing it, and
    the last answer. The unique key makes "one row per (event, endpoint)" a fact."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("event_seq", "endpoint"),
                      Index(None, "status", "next_attempt_at"))

    id: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    event_seq: Mapped[int] = mapped_column(Seq, ForeignKey("events.seq"))
    endpoint: Mapped[str] = mapped_column(String(64), ForeignKey("webhook_endpoints.name"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    # Claims in a row whose outcome was never recorded (migration 0010, worker.db.leases).
    unsettled_claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


metadata = Base.metadata
RESELLERS = metadata.tables["resellers"]
CUSTOMERS = metadata.tables["customers"]
SUBSCRIPTIONS = metadata.tables["subscriptions"]
INVOICES = metadata.tables["purchase_authorizations"]
CODES = metadata.tables["reseller_change_codes"]
PASSES = metadata.tables["passes"]
IMPORTS = metadata.tables["imports"]
TRANSITIONS = metadata.tables["transitions"]
NOTIFICATIONS = metadata.tables["notifications"]
MESSAGES = metadata.tables["notification_messages"]
EVENTS = metadata.tables["events"]
WEBHOOK_ENDPOINTS = metadata.tables["webhook_endpoints"]
WEBHOOK_DELIVERIES = metadata.tables["webhook_deliveries"]
BOUNCE_REPORTS, SUPPRESSIONS = metadata.tables["bounce_reports"], metadata.tables["suppressions"]
