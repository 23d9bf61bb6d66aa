"""The checks that URLs and secrets pass when the settings and the policy are read:
an endpoint URL is `https://`, or `http://` to a loopback host; a secret is a Standard
Webhooks secret. Each raises ValueError saying what is wrong, which pydantic reports
with the key's name.

Imports: the standard library only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
DEFAULT_ENDPOINT = "default"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1: the only hosts plain `http://` may reach."""
    if host.lower() in LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str) -> str:
    """An endpoint URL: `https://host…`, or `http://` to a loopback host (a receiver on
    the same machine, or a test). Raises ValueError saying what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"unknown scheme {parts.scheme!r} in {value!r} (expected https://)")
    if not parts.hostname:
        raise ValueError(f"no host name in {value!r}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"http:// is allowed to a loopback host only, not {parts.hostname!r}"
                         " (use https://)")
    return value


def check_secret(value: str) -> str:
    """A Standard Webhooks secret: `whsec_` followed by base64 of at least 16 bytes."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}")
    encoded = value[len(SECRET_PREFIX):]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64 after {SECRET_PREFIX!r}") from None
    if len(key) < 16:
        raise ValueError(f"too short: {len(key)} bytes after decoding (at least 16)")
    return value
