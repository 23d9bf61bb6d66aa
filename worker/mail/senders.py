"""Who a message says it is from, and where its bounces go: pure choices from the policy.

- **From.** A reseller whose mail domain has a DKIM key sends `From` its own address. With
  `[mail] fallback_from` set, a reseller whose domain has none sends `From: "<its sender
  name>" <fallback address>` with `Reply-To` its own address: the fallback's domain has a
  key, so the message passes DMARC, and answers still reach the reseller. Without
  `fallback_from`, it goes from its own address, unsigned, and `status` names the domain.
- **Envelope sender.** With `[mail] bounce_domain` set, each message goes to each
  recipient with its own envelope sender, `bounces+<token>.<check>@<bounce_domain>`: the
  token is the notice's (64 random bits, kept in its row), the check ties it to the
  recipient. A bounce then names the notice and the recipient even when the report is
  mangled, and neither can be guessed from the address alone. Without it, the envelope
  sender is the From address, and a report is matched by the Message-ID it quotes.

Imports: worker.config.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.config.policy import Policy

TOKEN_HEX = 16
_BOUNCE = re.compile(r"bounces\+([0-9a-f]{16})\.([0-9a-f]{8})@([A-Za-z0-9.-]+)", re.IGNORECASE)


def new_token() -> str:
    """A notice's bounce token: 64 random bits, hex."""
    return secrets.token_hex(TOKEN_HEX // 2)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def check_of(token: str, recipient: str) -> str:
    """The part of the envelope sender that ties a notice's token to one recipient."""
    return hashlib.sha256(f"{token}|{recipient.lower()}".encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class BounceAddress:
    """What an envelope sender of ours says: the notice's token and the recipient's check."""

    token: str
    check: str
    domain: str

    def names(self, recipient: str) -> bool:
        return check_of(self.token, recipient) == self.check


def parse_bounce_addresses(text: str, domain: str | None) -> list[BounceAddress]:
    """Every envelope sender of ours found in `text` (on `domain`, when given)."""
    found = []
    for token, check, where in _BOUNCE.findall(text):
        if domain is None or where.lower() == domain:
            found.append(BounceAddress(token.lower(), check.lower(), where.lower()))
    return found


@dataclass(frozen=True)
class Senders:
    """The sending identities of the policy (module docstring)."""

    signing_domains: frozenset[str] = frozenset()
    fallback_from: str | None = None
    bounce_domain: str | None = None

    @classmethod
    def from_policy(cls, policy: Policy) -> Senders:
        return cls(policy.signing_domains(), policy.mail.fallback_from,
                   policy.mail.bounce_domain)

    def falls_back(self, address: str) -> bool:
        """Whether mail from `address` goes From the fallback address instead."""
        return self.fallback_from is not None and domain_of(address) not in self.signing_domains

    def as_sender(self, reseller: Mapping[str, Any]) -> dict[str, Any]:
        """The payload's `reseller` as the message should name it (module docstring)."""
        email = str(reseller["email"])
        if not self.falls_back(email) or self.fallback_from is None:
            return dict(reseller)
        return {**reseller, "email": self.fallback_from,
                "reply_to": reseller.get("reply_to") or email}

    def envelope(self, sender: str, token: str | None, recipient: str) -> str:
        """The envelope sender (MAIL FROM) of one message to `recipient`."""
        if self.bounce_domain is not None and token:
            return f"bounces+{token}.{check_of(token, recipient)}@{self.bounce_domain}"
        if self.fallback_from is not None and self.falls_back(sender):
            return self.fallback_from
        return sender

    @property
    def per_recipient(self) -> bool:
        """Whether each recipient gets a transaction of its own (its envelope sender)."""
        return self.bounce_domain is not None

    def unsigned(self, addresses: Iterable[str]) -> list[str]:
        """The sending domains among `addresses` whose mail goes out unsigned."""
        if self.fallback_from is not None:
            return []
        return sorted({domain_of(a) for a in addresses if a} - self.signing_domains)
