"""The policy's mail sections: `[[dkim]]` keys per sending domain and `[mail]` (the
fallback sender that passes DMARC, the domain of the envelope senders). Read by
worker.config.policy; the keys themselves are loaded by worker.mail.dkim.

Imports: worker.config.section.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from worker.config.section import Section as _Section

_DOMAIN = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _check_domain(value: str | None) -> str | None:
    if value is not None and not (_DOMAIN.fullmatch(value) and len(value) <= 253):
        raise ValueError(f"not a domain name in lowercase ASCII: {value!r}")
    return value


def address_domain(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or any(ch.isspace() or ch in "<>,;\"" for ch in value):
        raise ValueError(f"not an email address: {value!r}")
    return domain.lower()


class DkimKeyPolicy(_Section):
    """One `[[dkim]]` table: the key that signs mail `From` this domain."""

    domain: str
    selector: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?"
                                           r"(\.[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?)*$")]
    key_file: Path

    _domain = field_validator("domain")(_check_domain)


class MailPolicy(_Section):
    """`[mail]`: the sender that passes DMARC for domains without a key, and the domain
    whose envelope senders name each notice and recipient (README, "Deliverability")."""

    fallback_from: str | None = None
    bounce_domain: str | None = None

    _domain = field_validator("bounce_domain")(_check_domain)

    @field_validator("fallback_from")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            address_domain(value)
        return value
