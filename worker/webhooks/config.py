"""The endpoints events are pushed to, and the checks their URLs and secrets pass.

Two sources: `WEBHOOK_URL` + `WEBHOOK_SECRET` (the endpoint named `default`), and
`[[webhooks.endpoints]]` tables in `WORKER_CONFIG` (`name`, `url`, `secrets`, `types`).
Both are checked when the program starts (settings and policy validation call
`check_url` and `check_secret`), so a wrong value never reaches a push.

This module imports nothing heavy: `worker.policy` and `worker.settings` use its checks.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from worker.policy import Policy
    from worker.settings import Settings

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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One receiver: where, which secrets sign (two during a rotation), which types."""

    name: str
    url: str
    secrets: tuple[str, ...]
    types: tuple[str, ...] = ("*",)

    def wants(self, event_type: str) -> bool:
        """Does this endpoint take events of `event_type`? Patterns as `subscription.*`."""
        return any(fnmatchcase(event_type, pattern) for pattern in self.types)


def configured_endpoints(settings: Settings, policy: Policy) -> tuple[Endpoint, ...]:
    """Every endpoint the configuration names: `default` from the environment first."""
    found: list[Endpoint] = []
    if settings.webhook_url and settings.webhook_secret:
        found.append(Endpoint(DEFAULT_ENDPOINT, settings.webhook_url,
                              tuple(settings.webhook_secret.split())))
    found += [Endpoint(e.name, e.url, tuple(e.secrets), tuple(e.types))
              for e in policy.webhooks.endpoints]
    return tuple(found)


def wanted_by(endpoints: Sequence[Endpoint], event_type: str) -> list[str]:
    """The names of the endpoints that take `event_type`."""
    return [e.name for e in endpoints if e.wants(event_type)]
