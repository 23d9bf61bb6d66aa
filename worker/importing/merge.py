"""The merged record: the stored row, changed by the fields the file carries.

An absent field keeps the stored value; `null` clears it (a field with a default goes
back to its default, a list to empty). A new record starts from the defaults. Only the
columns in `existing.OWNED` are ever set; derived columns keep their stored values (or
the schema's defaults on creation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.importing.existing import OWNED, Row
from worker.importing.parse import Incoming
from worker.importing.problems import SECTIONS
from worker.policy import Policy


@dataclass(slots=True)
class Merged:
    record: Incoming
    stored: Row | None
    row: Row

    @property
    def is_new(self) -> bool:
        return self.stored is None

    def changes(self) -> Row:
        """The owned columns whose merged value differs from the stored one."""
        columns = OWNED[self.record.section]
        if self.stored is None:
            return {name: self.row.get(name) for name in columns}
        return {
            name: self.row.get(name)
            for name in columns
            if self.row.get(name) != self.stored.get(name)
        }


@dataclass
class World:
    """What the file and the database hold together, as the import would leave it."""

    policy: Policy
    file_ids: dict[str, set[str]]
    stored: dict[str, dict[str, Row]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    merged: dict[str, dict[str, Merged]] = field(
        default_factory=lambda: {s: {} for s in SECTIONS}
    )

    def row(self, section: str, record_id: Any) -> Row | None:
        """The merged row if the file carries the record, else the stored one."""
        if not isinstance(record_id, str):
            return None
        merged = self.merged[section].get(record_id)
        return merged.row if merged is not None else self.stored[section].get(record_id)

    def known(self, section: str, record_id: str) -> bool:
        return record_id in self.file_ids[section] or record_id in self.stored[section]

    def sound(self, section: str, record_id: Any, name: str) -> bool:
        """False when the file carries this record with a refused value for `name`."""
        merged = self.merged[section].get(record_id) if isinstance(record_id, str) else None
        return merged is None or merged.record.sound(name)


Merger = Callable[[Incoming, Row | None, World], Row]


def start_row(section: str, record_id: str | None, stored: Row | None, **defaults: Any) -> Row:
    """The stored row to change, or a new one with every owned column (defaults or None)."""
    if stored is not None:
        return dict(stored)
    row: Row = dict.fromkeys(OWNED[section])
    row.update(defaults, id=record_id)
    return row


def apply(row: Row, values: Row, name: str, default: Any = None, *,
          column: str | None = None) -> None:
    """Copy a carried field; `null` sets the default (None for a nullable field)."""
    if name in values:
        value = values[name]
        row[column or name] = default if value is None else value


def merge_reseller(record: Incoming, stored: Row | None, world: World) -> Row:
    sender = world.policy.sender
    values = record.values
    row = start_row("resellers", record.id, stored, account_managers=[],
                    locale=sender.default_locale, timezone=sender.default_timezone)
    for name in ("name", "email", "reply_to"):
        apply(row, values, name)
    apply(row, values, "locale", sender.default_locale)
    apply(row, values, "timezone", sender.default_timezone)
    apply(row, values, "account_managers", [])
    if stored is None or "sender_name" in values:
        row["sender_name"] = values.get("sender_name") or row["name"]
    return row


def merge_customer(record: Incoming, stored: Row | None, world: World) -> Row:
    values = record.values
    row = start_row("customers", record.id, stored, segment="commercial", admins=[],
                    account_state="active")
    for name in ("reseller_id", "name", "timezone", "country", "managed_by"):
        apply(row, values, name)
    apply(row, values, "segment", "commercial")
    apply(row, values, "admins", [])
    apply(row, values, "account_state", "active")
    if stored is None or "locale" in values:
        reseller = world.row("resellers", row["reseller_id"]) or {}
        default = reseller.get("locale") or world.policy.sender.default_locale
        row["locale"] = values.get("locale") or default
    if "invitation" in values:
        invitation = values["invitation"] or {"status": None, "sent_at": None}
        row["invitation_status"] = invitation["status"]
        apply(row, invitation, "sent_at", column="invitation_sent_at")
    return row


def merge_purchase_authorization(record: Incoming, stored: Row | None, world: World) -> Row:
    row = start_row("purchase_authorizations", record.id, stored)
    for name in ("customer_id", "requested_on", "paid_on"):
        apply(row, record.values, name)
    return row


def merge_code(record: Incoming, stored: Row | None, world: World) -> Row:
    row = start_row("reseller_change_codes", record.id, stored)
    for name in ("customer_id", "reseller_id", "issued_at", "used_at"):
        apply(row, record.values, name)
    return row
