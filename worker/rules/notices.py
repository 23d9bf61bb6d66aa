"""Notification kinds: who receives each, and which family it belongs to (docs/rules.md).

Within a family only the latest due notice is created; a queued one that a later state
overtakes is cancelled.
"""

from __future__ import annotations

from typing import Final

CUSTOMER: Final = "customer"
RESELLER: Final = "reseller"
REQUESTING_RESELLER: Final = "requesting_reseller"

AUDIENCES: Final[dict[str, tuple[str, ...]]] = {
    "subscription_started": (CUSTOMER,),
    "invitation_reminder": (CUSTOMER,),
    "reseller_code_expiring": (CUSTOMER,),
    "renewal_upcoming": (CUSTOMER, RESELLER),
    "renewal_window_open": (CUSTOMER, RESELLER),
    "renewal_reminder": (CUSTOMER, RESELLER),
    "renewal_confirmed": (CUSTOMER, RESELLER),
    "auto_renewed": (CUSTOMER, RESELLER),
    "term_change_applied": (CUSTOMER, RESELLER),
    "subscription_expired": (CUSTOMER, RESELLER),
    "grace_ending": (CUSTOMER, RESELLER),
    "subscription_lapsed": (CUSTOMER, RESELLER),
    "payment_late": (CUSTOMER, RESELLER),
    "payment_suspended": (CUSTOMER, RESELLER),
    "payment_reinstated": (CUSTOMER, RESELLER),
    "reseller_code_expired": (REQUESTING_RESELLER,),
    "reseller_digest": (REQUESTING_RESELLER,),
}

FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "renewal": ("renewal_upcoming", "renewal_window_open", "renewal_reminder"),
    "grace": ("subscription_expired", "grace_ending", "subscription_lapsed"),
    "payment": ("payment_late", "payment_suspended"),
    "code": ("reseller_code_expiring", "reseller_code_expired"),
    "invitation": ("invitation_reminder",),
}

FAMILY_OF: Final[dict[str, str]] = {
    kind: family for family, kinds in FAMILIES.items() for kind in kinds
}

# Code mail is time-critical: it ignores the send window.
IGNORES_SEND_WINDOW: Final = frozenset({"reseller_code_expiring", "reseller_code_expired"})

KINDS: Final = tuple(AUDIENCES)
