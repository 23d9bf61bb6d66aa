"""Records in the import format (the README's example) and database probes for import tests."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from worker.config.policy import Policy
from worker.db.schema import metadata
from worker.errors import ImportRejected
from worker.importing.load import ImportReport, import_data

SECTIONS = ("resellers", "customers", "subscriptions", "purchase_authorizations",
            "reseller_change_codes")

RESELLER: dict[str, Any] = {
    "id": "r1", "name": "Nuage Conseil", "email": "ops@nuage.example",
    "sender_name": "Nuage Conseil", "locale": "fr", "timezone": "Europe/Paris",
    "account_managers": [{"id": "am1", "name": "Léa Martin", "email": "lea@nuage.example"}],
}
CUSTOMER: dict[str, Any] = {
    "id": "c1", "reseller_id": "r1", "name": "Boulangerie Dupont", "segment": "commercial",
    "locale": "fr", "timezone": "Europe/Paris", "country": "FR", "managed_by": "am1",
    "admins": [{"name": "Paul Dupont", "email": "paul@dupont.example"}],
    "account_state": "active",
    "invitation": {"status": "pending", "sent_at": "2027-01-04T10:00:00Z"},
}
SUBSCRIPTION: dict[str, Any] = {
    "id": "s1", "customer_id": "c1", "product": "TBox", "licences": 12,
    "start_date": "2026-03-15", "anniversary_date": "2027-03-15", "term_months": 12,
    "auto_renew": False, "renewal": {"ordered_on": "2027-02-20", "years": 1},
    "pending_change": {"term_months": 1},
}
PURCHASE_AUTHORIZATION: dict[str, Any] = {
    "id": "pa1", "customer_id": "c1", "requested_on": "2027-01-02", "paid_on": None,
}
CODE: dict[str, Any] = {
    "id": "k1", "customer_id": "c1", "reseller_id": "r1",
    "issued_at": "2027-01-10T09:30:00Z", "used_at": None,
}


def record(base: dict[str, Any], *, drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """A copy of `base` with `fields` set and the `drop` keys left out."""
    copied = {key: value for key, value in copy.deepcopy(base).items() if key not in drop}
    copied.update(fields)
    return copied


def reseller(**fields: Any) -> dict[str, Any]:
    return record(RESELLER, **fields)


def customer(**fields: Any) -> dict[str, Any]:
    return record(CUSTOMER, **fields)


def subscription(**fields: Any) -> dict[str, Any]:
    return record(SUBSCRIPTION, **fields)


def purchase_authorization(**fields: Any) -> dict[str, Any]:
    return record(PURCHASE_AUTHORIZATION, **fields)


def code(**fields: Any) -> dict[str, Any]:
    return record(CODE, **fields)


def full_document() -> dict[str, Any]:
    """the README's example: one record of every section."""
    return {"resellers": [reseller()], "customers": [customer()],
            "subscriptions": [subscription()],
            "purchase_authorizations": [purchase_authorization()],
            "reseller_change_codes": [code()]}


def run(engine: Engine, policy: Policy, document: dict[str, Any] | str, *,
        dry_run: bool = False) -> ImportReport:
    raw = document if isinstance(document, str) else json.dumps(document)
    return import_data(engine, raw, policy, dry_run=dry_run, started_at=datetime.now(UTC))


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every imported table, to show that a refused import wrote nothing."""
    with engine.connect() as connection:
        return {
            section: [tuple(row) for row in connection.execute(
                select(metadata.tables[section]).order_by(metadata.tables[section].c.id))]
            for section in SECTIONS
        }


def refused(engine: Engine, policy: Policy, document: dict[str, Any] | str) -> list[str]:
    """The errors of an import that must be refused; fails if anything was written."""
    before = snapshot(engine)
    with pytest.raises(ImportRejected) as refusal:
        run(engine, policy, document)
    assert snapshot(engine) == before
    return refusal.value.errors


def stored(engine: Engine, section: str, record_id: str) -> dict[str, Any]:
    source = metadata.tables[section]
    with engine.connect() as connection:
        row = connection.execute(select(source).where(source.c.id == record_id)).mappings().one()
    return dict(row)


def set_columns(engine: Engine, section: str, record_id: str, **values: Any) -> None:
    """Change stored columns directly, as a pass would."""
    source = metadata.tables[section]
    with engine.begin() as connection:
        connection.execute(update(source).where(source.c.id == record_id).values(**values))
