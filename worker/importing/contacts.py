"""Contacts whose address an import changes: their suppressions are lifted.

A suppressed address (worker.mail.suppressions) is one a bounce said is dead. When an
import changes a contact's address (a reseller's own address, an account manager's, a
customer admin's), the reseller has fixed that contact: the suppression of the address
it had, and of the one it now has, is lifted (recorded as lifted by the import). An
address re-imported unchanged keeps its suppression.

Imports: worker.mail.suppressions, worker.importing.merge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from worker.importing.merge import World
from worker.mail.suppressions import lift

_CONTACT_COLUMNS = {"resellers": ("email", "account_managers"), "customers": ("admins",)}


def _addresses(value: Any) -> set[str]:
    """The addresses in a column: an address, or a list of people with an `email`."""
    if isinstance(value, str):
        return {value.lower()}
    people: Iterable[Any] = value if isinstance(value, list) else ()
    return {str(p["email"]).lower() for p in people if isinstance(p, dict) and p.get("email")}


def changed_addresses(world: World) -> set[str]:
    """Addresses that contacts of stored records had or now have, where they changed."""
    changed: set[str] = set()
    for section, columns in _CONTACT_COLUMNS.items():
        for merged in world.merged[section].values():
            if merged.stored is None:
                continue
            moved = merged.changes()
            for column in columns:
                if column in moved:
                    changed |= _addresses(merged.stored.get(column)) ^ _addresses(moved[column])
    return changed


def lift_changed_contacts(connection: Connection, world: World, at: datetime) -> list[str]:
    """Lift the suppressions of the contacts the import changed; returns those lifted."""
    return lift(connection, changed_addresses(world), by="import", now=at)
