#!/usr/bin/env python3
"""Write a realistic demo portfolio as an import file (README, "Import format").

    python scripts/demo_data.py [--as-of 2027-03-01] [--out var/demo/portfolio.json]

Two resellers, a dozen customers across time zones and segments, and subscriptions,
purchase authorizations, reseller-change codes and invitations placed relative to the
as-of date D, so that one pass at `PASS_TIME` on D exercises every rule of docs/rules.md:

    renewal-worker run --once --as-of <D>T10:00:00Z

At 10:00 UTC every time zone used here (UTC-8 to UTC+13) is on the same local date D,
so each "N days before/after" lands exactly on its threshold. The output depends only
on D (default: today in UTC, read here at the script's edge): same D, same bytes.
Standard library only, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

# The moment of the demo pass on the as-of date (see the module docstring).
PASS_TIME = time(10, 0, tzinfo=UTC)

Record = dict[str, Any]


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def pass_moment(as_of: date) -> datetime:
    """The moment at which the demo's thresholds fall exactly on D for every customer."""
    return datetime.combine(as_of, PASS_TIME)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_day_31(after: date) -> date:
    """The first 31st of a month on or after `after` (a month-end anchor)."""
    day = after
    while day.day != 31:
        day += timedelta(days=1)
    return day


def _leap_day_subscription(as_of: date) -> tuple[date, date]:
    """(start, AD): started on the last 29 February before D; AD the first anniversary
    on or after D (28 February, or 29 in a leap year: anchor day 29)."""
    year = as_of.year
    while not (calendar.isleap(year) and date(year, 2, 29) < as_of):
        year -= 1
    start = date(year, 2, 29)
    years = 1
    while add_months(start, 12 * years) < as_of:
        years += 1
    return start, add_months(start, 12 * years)


RESELLERS: list[Record] = [
    {
        "id": "RSL-FR-0042",
        "name": "Nuage Conseil SARL",
        "email": "ops@nuage-conseil.example",
        "sender_name": "Nuage Conseil",
        "locale": "fr",
        "timezone": "Europe/Paris",
        "account_managers": [
            {"id": "AM-FR-0042-01", "name": "Léa Martin",
             "email": "lea.martin@nuage-conseil.example"},
            {"id": "AM-FR-0042-02", "name": "Hugo Lefèvre",
             "email": "hugo.lefevre@nuage-conseil.example"},
        ],
    },
    {
        "id": "RSL-CA-0107",
        "name": "Maple Cloud Partners Inc.",
        "email": "renewals@maplecloud.example",
        "sender_name": "Maple Cloud Partners",
        "locale": "en",
        "timezone": "America/Toronto",
        "account_managers": [],
    },
]

_FR, _CA = "RSL-FR-0042", "RSL-CA-0107"

# (id, reseller, name, segment, locale, timezone, country, account manager, admins, state)
_CUSTOMERS: list[tuple[str, str, str, str, str, str, str, str | None,
                       list[tuple[str, str]], str]] = [
    ("C-51042318", _FR, "Boulangerie Dupont & Fils", "commercial", "fr", "Europe/Paris", "FR",
     "AM-FR-0042-01", [("Paul Dupont", "paul.dupont@boulangerie-dupont.example")], "active"),
    ("C-51042907", _FR, "Lycée Émile-Zola", "education", "fr", "Europe/Paris", "FR",
     "AM-FR-0042-02", [("Hélène Garçon", "h.garcon@lycee-zola.example"),
                       ("Jérôme Bénard", "j.benard@lycee-zola.example")], "active"),
    ("C-51043376", _FR, "Mairie de Saint-Étienne-de-Tinée", "government", "fr", "Europe/Paris",
     "FR", "AM-FR-0042-01", [("Anaïs Rivière", "informatique@mairie-sedt.example")], "active"),
    ("C-51044120", _FR, "Cabinet Lefèvre & Associés", "commercial", "fr", "Europe/Paris", "FR",
     None, [("François Lefèvre", "f.lefevre@cabinet-lefevre.example")], "active"),
    ("C-51044583", _FR, "Érablière Côté inc.", "commercial", "fr_CA", "America/Montreal", "CA",
     "AM-FR-0042-02", [("Chloé Côté", "chloe@erabliere-cote.example")], "active"),
    ("C-51045011", _FR, "Hôtel Les Mouettes", "commercial", "fr", "Europe/Paris", "FR",
     "AM-FR-0042-01", [("Noël Mercier", "direction@hotel-mouettes.example")], "updating"),
    ("C-51045468", _FR, "Atelier Bérénice Céramique", "commercial", "fr", "Europe/Paris", "FR",
     None, [("Bérénice Lemaître", "berenice@atelier-ceramique.example")], "active"),
    ("C-62010034", _CA, "Harbourfront Dental Clinic", "commercial", "en_CA", "America/Toronto",
     "CA", None, [("Priya Raman", "it@harbourfront-dental.example")], "active"),
    ("C-62010571", _CA, "Pacific Crest Robotics", "commercial", "en_US", "America/Los_Angeles",
     "US", None, [("Dana Whitaker", "dana.whitaker@pacificcrest.example"),
                  ("Luis Ortega", "luis.ortega@pacificcrest.example")], "active"),
    ("C-62011209", _CA, "Kiwi Coast Tours Ltd", "commercial", "en_NZ", "Pacific/Auckland", "NZ",
     None, [("Aroha Ngata", "admin@kiwicoasttours.example")], "active"),
    ("C-62011848", _CA, "Sakura Design KK", "commercial", "ja", "Asia/Tokyo", "JP",
     None, [("Haruto Sato", "sato@sakura-design.example")], "suspended"),
    ("C-62012390", _CA, "Lakeshore Collegiate Institute", "education", "en_CA",
     "America/Vancouver", "CA", None, [("Mark O'Connell", "helpdesk@lakeshore-ci.example")],
     "active"),
]


def _customers(as_of: date) -> list[Record]:
    records: list[Record] = []
    for (cid, reseller, name, segment, locale, zone, country, manager, admins,
         state) in _CUSTOMERS:
        accepted = pass_moment(as_of - timedelta(days=400)) + timedelta(hours=len(records))
        record: Record = {
            "id": cid, "reseller_id": reseller, "name": name, "segment": segment,
            "locale": locale, "timezone": zone, "country": country, "managed_by": manager,
            "admins": [{"name": n, "email": e} for n, e in admins],
            "account_state": state,
            "invitation": {"status": "accepted", "sent_at": _stamp(accepted)},
        }
        records.append(record)
    # A pending invitation sent 8 days ago: the 7-day reminder is due.
    erabliere = next(r for r in records if r["id"] == "C-51044583")
    erabliere["invitation"] = {
        "status": "pending", "sent_at": _stamp(pass_moment(as_of - timedelta(days=8))
                                               + timedelta(hours=4)),
    }
    return records


def _subscriptions(as_of: date) -> list[Record]:
    days = timedelta
    subs: list[Record] = []
    per_customer: dict[str, int] = {}

    def sub(customer: str, product: str, licences: int, ad: date, *, term: int = 12,
            start: date | None = None, auto_renew: bool = False,
            renewal: Record | None = None, pending_change: Record | None = None) -> None:
        per_customer[customer] = per_customer.get(customer, 0) + 1
        subs.append({
            "id": f"SUB-{customer[2:]}-{per_customer[customer]:02d}",
            "customer_id": customer, "product": product, "licences": licences,
            "start_date": (start or add_months(ad, -term)).isoformat(),
            "anniversary_date": ad.isoformat(), "term_months": term, "auto_renew": auto_renew,
            "renewal": renewal, "pending_change": pending_change,
        })

    d = as_of
    # Starts today: status active, `subscription_started`.
    sub("C-62011209", "Signatures for Microsoft 365", 18, add_months(d, 12), start=d)
    # Not started yet: `pending_start`, bucket `not_started`.
    sub("C-51045468", "TBox", 3, add_months(d + days(12), 12), start=d + days(12))
    # Renewal notices: AD in 45, 30, 7 and 1 days.
    sub("C-51042318", "TBox", 12, d + days(45), start=add_months(d + days(45), -36))
    sub("C-62010034", "Worry-Free Services Advanced", 25, d + days(30), auto_renew=True)
    sub("C-51044120", "Acrobat Pro for teams", 8, d + days(7))
    sub("C-62010571", "Creative Cloud All Apps", 40, d + days(1), auto_renew=True)
    # Renewal recorded before AD: `renewed`, `renewal_confirmed`.
    sub("C-51042907", "Creative Cloud All Apps for education", 120, d + days(20),
        renewal={"ordered_on": (d - days(3)).isoformat(), "years": 1})
    # AD today with a renewal recorded: active, AD moves on by the two years ordered.
    sub("C-51043376", "TSend", 30, d,
        renewal={"ordered_on": (d - days(12)).isoformat(), "years": 2})
    # AD today, auto-renew on: active, `auto_renewed`.
    sub("C-62010571", "Stratocast Camera Licence", 16, d, auto_renew=True)
    # Extended first term of 36 months ending today: renews for 12 months, `auto_renewed`.
    sub("C-51045011", "Stratocast Camera Licence", 24, d, term=36)
    # Pending change to monthly, applied at today's AD: `term_change_applied`.
    sub("C-62010034", "Signatures for Microsoft 365", 14, d, auto_renew=True,
        pending_change={"term_months": 1})
    # Grace: AD 5 days ago (`subscription_expired`), 11 days ago (`grace_ending`);
    # lapsed: 14 days ago (`subscription_lapsed`).
    sub("C-51044120", "TBox", 5, d - days(5))
    sub("C-62011848", "Creative Cloud Photography", 4, d - days(11))
    sub("C-51045468", "Acrobat Standard", 2, d - days(14))
    # Renewal ordered in grace: active again, AD counted on from the old AD.
    sub("C-62012390", "Worry-Free Services", 300, d - days(8),
        renewal={"ordered_on": (d - days(2)).isoformat(), "years": 1})
    # Month-end anchor 31, monthly term: renews silently, clamped to shorter months.
    sub("C-51044583", "Signatures for Microsoft 365", 6, _next_day_31(d), term=1,
        start=add_months(_next_day_31(d), -24), auto_renew=True)
    # Started on 29 February: anniversaries on 28 February, 29 in leap years.
    leap_start, leap_ad = _leap_day_subscription(d)
    sub("C-51042907", "TBox", 45, leap_ad, start=leap_start, auto_renew=True)
    # Education, extended first term of 48 months, AD in 60 days: `to_renew`, no notice yet.
    sub("C-62012390", "Creative Cloud All Apps for education", 250, d + days(60), term=48)
    # Steady subscriptions far from their AD: bucket `ok`.
    sub("C-62011209", "Worry-Free Services", 10, d + days(200), auto_renew=True,
        start=add_months(d + days(200), -24))
    sub("C-51042318", "Signatures for Microsoft 365", 12, d + days(150), auto_renew=True)
    sub("C-62011848", "Acrobat Pro for teams", 9, d + days(170), auto_renew=True)
    return subs


def _purchase_authorizations(as_of: date) -> list[Record]:
    def pa(number: int, customer: str, requested: int, paid: int | None) -> Record:
        return {
            "id": f"PA-{number:07d}", "customer_id": customer,
            "requested_on": (as_of - timedelta(days=requested)).isoformat(),
            "paid_on": None if paid is None else (as_of - timedelta(days=paid)).isoformat(),
        }

    return [
        pa(2041187, "C-51042318", 90, 70),    # paid long ago: history only
        pa(2041552, "C-51044120", 35, None),  # day 35 unpaid: `late`, `payment_late`
        pa(2041603, "C-62010571", 65, None),  # day 65 unpaid: `suspended`
        pa(2041777, "C-62010571", 20, None),  # younger item of the suspended customer
        pa(2041820, "C-62010034", 10, None),  # day 10: still `current`
    ]


def _codes(as_of: date) -> list[Record]:
    moment = pass_moment(as_of)

    def code(ident: str, customer: str, reseller: str, hours_ago: int,
             used_after_hours: int | None = None) -> Record:
        issued = moment - timedelta(hours=hours_ago)
        used = None if used_after_hours is None else issued + timedelta(hours=used_after_hours)
        return {"id": ident, "customer_id": customer, "reseller_id": reseller,
                "issued_at": _stamp(issued), "used_at": None if used is None else _stamp(used)}

    return [
        code("RCC-7Q4M-2KXD", "C-51045011", _FR, 50),  # expires in 22 h: expiring
        code("RCC-9HT3-WN6B", "C-62011209", _CA, 80),  # expired 8 h ago
        code("RCC-3FJP-LA8R", "C-51043376", _FR, 30, used_after_hours=5),  # used
    ]


def build_portfolio(as_of: date) -> Record:
    """The whole import document for a pass on `as_of` (see the module docstring)."""
    return {
        "resellers": RESELLERS,
        "customers": _customers(as_of),
        "subscriptions": _subscriptions(as_of),
        "purchase_authorizations": _purchase_authorizations(as_of),
        "reseller_change_codes": _codes(as_of),
    }


def render(as_of: date) -> str:
    return json.dumps(build_portfolio(as_of), ensure_ascii=False, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--as-of", type=date.fromisoformat, default=None, metavar="DATE",
                        help="the date D of the demo pass, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="write here instead of standard output")
    args = parser.parse_args(argv)
    as_of: date = args.as_of or datetime.now(UTC).date()
    text = render(as_of)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"demo portfolio as of {as_of} written to {args.out}; "
              f"pass moment {_stamp(pass_moment(as_of))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
