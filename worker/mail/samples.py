"""Realistic sample notifications, shaped as a pass stores them (`worker.passes.effects`).

`preview` renders them and the tests start from them: one row per kind, audience and
locale, with a French reseller (Nuage Conseil) and customers named as real ones are
(accents, ampersands). Dates follow the policy: the lapse day is the anniversary plus
the grace days, a code expires its validity hours after issue, and so on.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from worker.config.policy import Policy
from worker.mail.render import audiences_of, parse_locale
from worker.rules.notices import AUDIENCES, CUSTOMER, KINDS

SAMPLE_MOMENT = datetime(2027, 3, 1, 8, 30, tzinfo=UTC)
ANNIVERSARY = date(2027, 3, 15)

RESELLER_INFO = {"id": "r-nuage", "name": "Nuage Conseil", "email": "ops@nuage.example",
                 "sender_name": "Nuage Conseil", "reply_to": "support@nuage.example"}
MANAGER = ("Léa Martin", "lea.martin@nuage.example")

CUSTOMERS: dict[str, dict[str, Any]] = {
    "fr": {"id": "c-lefevre", "name": "Pâtisserie Lefèvre & Fils",
           "admins": [("Hélène Lefèvre", "helene@patisserie-lefevre.example")],
           "product": "TBox", "licences": 12},
    "fr_CA": {"id": "c-cote", "name": "Érablière Côté inc.",
              "admins": [("Geneviève Côté", "genevieve@erabliere-cote.example"),
                         ("Marc-André Côté", "marc-andre@erabliere-cote.example")],
              "product": "Stratocast", "licences": 24},
    "en": {"id": "c-harbour", "name": "Harbour View Dental Practice",
           "admins": [("Olivia Bennett", "olivia.bennett@harbourview.example")],
           "product": "Signatures for Microsoft 365", "licences": 1250},
}
ZONES = {"fr": "Europe/Paris", "fr_CA": "America/Toronto", "en": "Europe/London",
         "en_US": "America/New_York"}
DIGEST_NAMES = (
    "Cabinet Moreau Avocats", "Garage Lemaire", "Mairie de Saint-Éloi", "Lycée Jean-Moulin",
    "Clinique vétérinaire des Tilleuls", "Atelier Bernard & Cie", "Transports Giraud",
)
DIGEST_PRODUCTS = ("TBox", "Signatures for Microsoft 365", "TSend", "Stratocast")


def _iso(day: date) -> str:
    return day.isoformat()


def _customer_sample(locale: str) -> dict[str, Any]:
    parsed = parse_locale(locale)
    language = parsed.language if parsed is not None else "en"
    return CUSTOMERS.get(locale) or CUSTOMERS.get(language) or CUSTOMERS["en"]


def _zone(locale: str) -> str:
    parsed = parse_locale(locale)
    return ZONES.get(locale) or ZONES.get(parsed.language if parsed else "", "Europe/Paris")


def _subscription(customer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    base = {"id": f"s-{customer['id']}-1", "product": customer["product"],
            "licences": customer["licences"], "start_date": "2026-03-15", "term_months": 12,
            "auto_renew": False, "anniversary_date": _iso(ANNIVERSARY)}
    return {**base, **changes}


def _subscription_facts(kind: str, policy: Policy) -> tuple[dict[str, Any], dict[str, Any]]:
    """(facts, changes to the subscription) of each subscription kind."""
    ad, next_ad = ANNIVERSARY, date(2028, 3, 15)
    lapse = ad + timedelta(days=policy.grace.lapse_after_days)
    renewal = policy.renewal
    table: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "subscription_started": ({}, {"start_date": "2027-03-01", "anniversary_date":
                                      "2028-03-01", "auto_renew": True}),
        "renewal_upcoming": ({"anniversary_date": _iso(ad),
                              "days_before": renewal.upcoming_days_before}, {}),
        "renewal_window_open": ({"anniversary_date": _iso(ad),
                                 "days_before": renewal.window_days_before},
                                {"auto_renew": True}),
        "renewal_reminder": ({"anniversary_date": _iso(ad),
                              "days_before": min(renewal.reminder_days_before, default=7)}, {}),
        "renewal_confirmed": ({"anniversary_date": _iso(ad), "next_anniversary_date":
                               _iso(next_ad), "years": 1, "ordered_on": "2027-02-20"}, {}),
        "auto_renewed": ({"anniversary_date": _iso(ad), "next_anniversary_date": _iso(next_ad),
                          "term_months": 12}, {"auto_renew": True,
                                               "anniversary_date": _iso(next_ad)}),
        "term_change_applied": ({"anniversary_date": _iso(ad), "from_term_months": 12,
                                 "to_term_months": 1},
                                {"term_months": 1, "anniversary_date": "2027-04-15"}),
    }
    grace = {"anniversary_date": _iso(ad), "lapse_date": _iso(lapse)}
    for grace_kind in ("subscription_expired", "grace_ending", "subscription_lapsed"):
        table[grace_kind] = (grace, {})
    return table[kind]


def _customer_facts(kind: str, policy: Policy) -> dict[str, Any]:
    today = SAMPLE_MOMENT.date()
    late_days = policy.payment.late_after_days + 3
    suspended_days = policy.payment.suspended_after_days
    invited_days = min(policy.invitations.reminder_days_after)
    issued = datetime(2027, 2, 26, 14, 30, tzinfo=UTC)
    code = {"issued_at": issued.isoformat(),
            "expires_at": (issued + timedelta(hours=policy.codes.valid_hours)).isoformat()}
    facts: dict[str, dict[str, Any]] = {
        "payment_late": {"invoice_id": "PA-2027-0042", "days_outstanding": late_days,
                         "requested_on": _iso(today - timedelta(days=late_days))},
        "payment_suspended": {"invoice_id": "PA-2027-0042", "days_outstanding": suspended_days,
                              "requested_on": _iso(today - timedelta(days=suspended_days))},
        "payment_reinstated": {"invoice_id": "PA-2027-0042"},
        "invitation_reminder": {"invited_on": _iso(today - timedelta(days=invited_days)),
                                "days_since": invited_days},
        "reseller_code_expiring": code,
        "reseller_code_expired": code,
    }
    return facts[kind]


# Digest groups: (count, lists subscriptions, days from the digest date to the first AD).
DIGEST_SHAPE: dict[str, tuple[int, bool, int]] = {
    "to_renew": (15, True, 40), "ready_for_renewal": (2, True, 12), "in_grace": (1, True, -6),
    "lapsed": (0, True, -20), "late_payment": (2, False, 0), "suspended": (1, False, 0),
    "pending_invitations": (3, False, 0), "not_started": (0, True, 60), "renewed": (4, True, 20),
}


def _digest_entries(count: int, offset: int, first_ad: date | None) -> list[dict[str, Any]]:
    found = []
    for index in range(count):
        number = index + offset
        entry: dict[str, Any] = {"customer_id": f"c-{number}",
                                 "customer": DIGEST_NAMES[number % len(DIGEST_NAMES)]}
        if first_ad is not None:
            entry |= {"subscription_id": f"s-{number}",
                      "product": DIGEST_PRODUCTS[number % len(DIGEST_PRODUCTS)],
                      "anniversary_date": _iso(first_ad + timedelta(days=9 * index))}
        found.append(entry)
    return found


def _digest_facts(policy: Policy) -> dict[str, Any]:
    today = SAMPLE_MOMENT.date()
    listed = min(3, policy.digest.max_listed_per_group)
    groups = []
    for offset, (key, (count, subscriptions, days)) in enumerate(DIGEST_SHAPE.items()):
        first_ad = today + timedelta(days=days) if subscriptions else None
        shown = _digest_entries(min(count, listed), offset, first_ad)
        groups.append({"key": key, "count": count, "entries": shown,
                       "more": count - len(shown)})
    return {"date": _iso(today), "groups": groups}


def _facts_and_context(kind: str, customer: dict[str, Any], policy: Policy) -> dict[str, Any]:
    if kind == "reseller_digest":
        return {"facts": _digest_facts(policy)}
    context: dict[str, Any] = {"customer": {"id": customer["id"], "name": customer["name"]}}
    if kind.startswith(("reseller_code", "payment", "invitation")):
        if kind.startswith("reseller_code"):
            context["code"] = {"id": f"k-{customer['id']}"}
        return {**context, "facts": _customer_facts(kind, policy)}
    facts, changes = _subscription_facts(kind, policy)
    return {**context, "facts": facts, "subscription": _subscription(customer, **changes)}


def _recipients(kind: str, audience: str, customer: dict[str, Any]) -> list[tuple[str, str]]:
    if audience == CUSTOMER:
        return list(customer["admins"])
    if kind in ("reseller_digest", "reseller_code_expired"):
        return [(RESELLER_INFO["name"], RESELLER_INFO["email"])]
    return [MANAGER]


def sample_row(
    kind: str, audience: str, locale: str = "fr", policy: Policy | None = None, row_id: int = 1
) -> dict[str, Any]:
    """One notification row as `worker.passes.effects.Batch.queue` stores it, with an id."""
    if kind not in AUDIENCES:
        raise ValueError(f"unknown kind {kind!r}")
    customer = _customer_sample(locale)
    people = _recipients(kind, audience, customer)
    context = _facts_and_context(kind, customer, policy or Policy())
    return {
        "id": row_id, "kind": kind, "ref": customer["id"], "occasion": _iso(ANNIVERSARY),
        "audience": audience, "recipients": [email for _, email in people],
        "locale": locale, "timezone": _zone(locale), "occasion_date": SAMPLE_MOMENT.date(),
        "created_at": SAMPLE_MOMENT, "status": "queued",
        "payload": {**context, "reseller": dict(RESELLER_INFO),
                    "recipient_names": [name for name, _ in people]},
    }


def sample_rows(
    kinds: tuple[str, ...] = KINDS, locales: tuple[str, ...] = ("fr", "en"),
    policy: Policy | None = None,
) -> list[dict[str, Any]]:
    """Every kind x audience x locale, numbered from 1."""
    pairs = [(k, a, loc) for k in kinds for a in audiences_of(k) for loc in locales]
    return [sample_row(k, a, loc, policy, number) for number, (k, a, loc) in
            enumerate(pairs, start=1)]


# -- hostile data: what a careless or malicious import could put in names -------------

HOSTILE_NAMES: tuple[str, ...] = (
    '<script>alert("pwned")</script>',
    "O'Brien & \"Fils\" <b>SARL</b> </td></table>",
    "Société d’Électricité Générale – Œuvres & Çà",
    "Evil Corp\r\nBcc: victim@evil.example\r\n\r\n<img src=x onerror=alert(1)>",
    "=?UTF-8?Q?=0D=0ABcc:_victim@evil.example?= Ltd",
    ("Très Longue Raison Sociale Interprofessionnelle " * 7)[:300],
    "شركة النور للتجارة \u202egnp.exe\u202c",
    "Tab\there\x00NUL\x0bVT\u2028LS\u0085NEL\x1b[31m",
)


def hostile_row(
    kind: str, audience: str, locale: str = "fr", rotation: int = 0,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """A sample row whose every name (reseller, sender, recipients, customer, product,
    invoice reference, digest entries) is one of `HOSTILE_NAMES`, starting at
    `rotation`, so that each field meets each hostile value over the rotations."""
    row = sample_row(kind, audience, locale, policy)
    start = rotation % len(HOSTILE_NAMES)
    names = itertools.cycle(HOSTILE_NAMES[start:] + HOSTILE_NAMES[:start])
    payload = row["payload"]
    payload["reseller"] |= {"name": next(names), "sender_name": next(names)}
    payload["recipient_names"] = [next(names) for _ in payload["recipient_names"]]
    for key, field in (("customer", "name"), ("subscription", "product")):
        if key in payload:
            payload[key][field] = next(names)
    facts = payload["facts"]
    if "invoice_id" in facts:
        facts["invoice_id"] = next(names)
    for group in facts.get("groups", ()):
        for entry in group["entries"]:
            entry["customer"] = next(names)
            if "product" in entry:
                entry["product"] = next(names)
    return row
