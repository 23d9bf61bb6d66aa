"""The endpoints events are pushed to.

Two sources: `WEBHOOK_URL` + `WEBHOOK_SECRET` (the endpoint named `default`), and
`[[webhooks.endpoints]]` tables in `WORKER_CONFIG` (`name`, `url`, `secrets`, `types`).
Both were checked when the settings and the policy were read (`worker.config.checks`),
so a wrong value never reaches a push.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from worker.config.checks import DEFAULT_ENDPOINT
from worker.config.policy import Policy
from worker.config.settings import Settings


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
