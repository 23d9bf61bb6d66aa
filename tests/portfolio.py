"""A small portfolio in the import format of the README, for pass and end-to-end tests."""

from __future__ import annotations

import copy
import json
from typing import Any

BASE: dict[str, Any] = {
    "resellers": [
        {"id": "r1", "name": "Nuage Conseil", "email": "ops@nuage.example",
         "sender_name": "Nuage Conseil", "locale": "fr", "timezone": "Europe/Paris",
         "account_managers": [{"id": "am1", "name": "Léa Martin", "email": "lea@nuage.example"}]},
        {"id": "r2", "name": "Maple Licensing", "email": "desk@maple.example",
         "locale": "en", "timezone": "America/Toronto", "account_managers": []},
    ],
    "customers": [
        {"id": "c1", "reseller_id": "r1", "name": "Boulangerie Dupont", "segment": "commercial",
         "locale": "fr", "timezone": "Europe/Paris", "country": "FR", "managed_by": "am1",
         "admins": [{"name": "Paul Dupont", "email": "paul@dupont.example"}],
         "account_state": "active"},
        {"id": "c2", "reseller_id": "r2", "name": "Harbour Dental", "segment": "education",
         "locale": "en", "timezone": "America/Los_Angeles", "country": "US",
         "admins": [{"name": "Ann Lee", "email": "ann@harbour.example"},
                    {"name": "Bo Chan", "email": "bo@harbour.example"}],
         "account_state": "active"},
        {"id": "c3", "reseller_id": "r2", "name": "Kiwi Tours", "segment": "commercial",
         "locale": "en", "timezone": "Pacific/Auckland", "country": "NZ",
         "admins": [{"name": "Mere Ngata", "email": "mere@kiwi.example"}],
         "account_state": "active",
         "invitation": {"status": "pending", "sent_at": "2027-01-04T10:00:00Z"}},
    ],
    "subscriptions": [
        {"id": "s1", "customer_id": "c1", "product": "TBox", "licences": 12,
         "start_date": "2026-03-15", "anniversary_date": "2027-03-15", "term_months": 12,
         "auto_renew": False},
        {"id": "s2", "customer_id": "c2", "product": "Signatures for Microsoft 365",
         "licences": 40, "start_date": "2026-03-01", "anniversary_date": "2027-03-01",
         "term_months": 12, "auto_renew": True},
        {"id": "s3", "customer_id": "c3", "product": "Stratocast", "licences": 8,
         "start_date": "2026-03-01", "anniversary_date": "2027-03-01", "term_months": 12,
         "auto_renew": False},
    ],
    "purchase_authorizations": [
        {"id": "pa1", "customer_id": "c1", "requested_on": "2027-01-02", "paid_on": None},
    ],
    "reseller_change_codes": [
        {"id": "k1", "customer_id": "c2", "reseller_id": "r2",
         "issued_at": "2027-01-10T09:30:00Z", "used_at": None},
    ],
}


def portfolio(**sections: list[dict[str, Any]]) -> dict[str, Any]:
    """The base portfolio, with whole sections replaced where given."""
    data = copy.deepcopy(BASE)
    data.update(sections)
    return data


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)
