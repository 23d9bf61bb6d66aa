"""Business policy: the rules' numbers (docs/rules.md), from `config/policy.toml` and
`WORKER_CONFIG`.

Resolved once at the boundary into a frozen, validated object; rules receive it as an
argument and never read files or the environment themselves.
"""

from __future__ import annotations

import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.config.bounds import check_locale, check_zone
from worker.config.checks import DEFAULT_ENDPOINT, check_secret, check_url
from worker.config.mailing import DkimKeyPolicy, MailPolicy, address_domain
from worker.config.section import Section as _Section
from worker.errors import ConfigError
from worker.support.resources import resource_dir

# Every number has a ceiling, so that no policy value can carry a date past the year
# 9999, a timer past what the platform sleeps, or a loop past what a pass can do.
MAX_DAYS = 3660  # ten years
MAX_MONTHS = 120  # ten years
MAX_HOURS = 24 * 366  # a year
MAX_MINUTES = 7 * 24 * 60  # a week: the longest interval or delay between two attempts
MAX_SECONDS = 3600  # an hour: heartbeats, shutdown
MAX_COUNT = 100_000  # batches, listed names, codes a day

Days = Annotated[StrictInt, Field(ge=0, le=MAX_DAYS)]
PositiveDays = Annotated[StrictInt, Field(gt=0, le=MAX_DAYS)]
Months = Annotated[StrictInt, Field(gt=0, le=MAX_MONTHS)]
Hours = Annotated[StrictInt, Field(ge=0, le=MAX_HOURS)]
Minutes = Annotated[StrictInt, Field(gt=0, le=MAX_MINUTES)]
Seconds = Annotated[StrictInt, Field(gt=0, le=MAX_SECONDS)]
Count = Annotated[StrictInt, Field(gt=0, le=MAX_COUNT)]
SEGMENTS = ("commercial", "education", "government")


def _parse_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a time of day as \"HH:MM\"")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a time of day: {value!r} (expected \"HH:MM\")") from None


class RenewalPolicy(_Section):
    upcoming_days_before: Days = 45
    window_days_before: Days = 30
    reminder_days_before: Annotated[tuple[Days, ...], Field(max_length=20)] = (7, 1)
    notice_min_term_months: Months = 12
    after_extended_term_months: Months = 12
    max_term_months: dict[str, Months] = Field(
        default_factory=lambda: {"commercial": 36, "education": 48, "government": 48}
    )

    @field_validator("max_term_months")
    @classmethod
    def _segments(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"unknown segment {unknown[0]!r}")
        missing = sorted(set(SEGMENTS) - set(value))
        if missing:
            raise ValueError(f"missing segment {missing[0]!r}")
        return value

    @model_validator(mode="after")
    def _in_order(self) -> RenewalPolicy:
        if self.window_days_before > self.upcoming_days_before:
            raise ValueError("window_days_before must not exceed upcoming_days_before (the "
                             "window opens after the first notice)")
        return self

    def notice_offsets(self) -> tuple[tuple[int, str], ...]:
        """(days before AD, kind) of the renewal family, earliest first."""
        offsets = {self.upcoming_days_before: "renewal_upcoming"}
        for days in self.reminder_days_before:
            offsets.setdefault(days, "renewal_reminder")
        offsets[self.window_days_before] = "renewal_window_open"
        return tuple(sorted(offsets.items(), key=lambda item: -item[0]))


class GracePolicy(_Section):
    lapse_after_days: Days = 14
    ending_notice_days_before_lapse: Days = 3

    @model_validator(mode="after")
    def _in_grace(self) -> GracePolicy:
        if self.ending_notice_days_before_lapse > self.lapse_after_days:
            raise ValueError("ending_notice_days_before_lapse must not exceed "
                             "lapse_after_days (the notice falls within the grace period)")
        return self


class PaymentPolicy(_Section):
    late_after_days: PositiveDays = 31
    suspended_after_days: PositiveDays = 61

    @model_validator(mode="after")
    def _late_first(self) -> PaymentPolicy:
        if self.suspended_after_days <= self.late_after_days:
            raise ValueError("suspended_after_days must be more than late_after_days (a "
                             "customer is late before being suspended)")
        return self


class CodePolicy(_Section):
    valid_hours: Annotated[StrictInt, Field(gt=0, le=MAX_HOURS)] = 72
    expiring_notice_hours_before: Hours = 24
    max_per_reseller_per_day: Count = 5

    @model_validator(mode="after")
    def _warned_while_valid(self) -> CodePolicy:
        if self.expiring_notice_hours_before >= self.valid_hours:
            raise ValueError("expiring_notice_hours_before must be less than valid_hours "
                             "(the warning falls while the code is valid)")
        return self


class InvitationPolicy(_Section):
    reminder_days_after: Annotated[tuple[PositiveDays, ...], Field(max_length=20)] = (7, 14)


class CatchUpPolicy(_Section):
    horizon_days: Days = 30


class BucketPolicy(_Section):
    to_renew_within_days: Days = 90
    recently_lapsed_days: Days = 30


class DigestPolicy(_Section):
    send_from: time = time(8, 0)
    max_listed_per_group: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] = 50

    _clock = field_validator("send_from", mode="before")(_parse_clock)


class SendWindowPolicy(_Section):
    start: time = time(8, 0)
    end: time = time(20, 0)

    _clock = field_validator("start", "end", mode="before")(_parse_clock)


class SchedulePolicy(_Section):
    timezone: str = "UTC"
    pass_every_minutes: Annotated[StrictInt, Field(gt=0, le=1440)] = 15
    deliver_every_minutes: Annotated[StrictInt, Field(gt=0, le=1440)] = 1
    forecast_pass_at: time = time(12, 0)
    heartbeat_seconds: Seconds = 30
    abandon_after_minutes: Minutes = 10

    _zone = field_validator("timezone")(check_zone)
    _clock = field_validator("forecast_pass_at", mode="before")(_parse_clock)

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> SchedulePolicy:
        if self.abandon_after_minutes * 60 < 3 * self.heartbeat_seconds:
            raise ValueError("abandon_after_minutes must cover at least three heartbeats "
                             "(heartbeat_seconds)")
        return self


class ShutdownPolicy(_Section):
    within_seconds: Seconds = 25


class DeliveryPolicy(_Section):
    retry_delays_minutes: Annotated[tuple[Minutes, ...], Field(max_length=100)] = (
        5, 15, 30, 60, 120, 240, 480, 720, 1440)
    lease_minutes: Annotated[float, Field(gt=0, le=1440, allow_inf_nan=False)] = 15
    batch: Count = 200
    connections: Annotated[StrictInt, Field(gt=0, le=100)] = 4
    hold_after_unrecorded_claims: Annotated[StrictInt, Field(ge=1, le=100)] = 3

    @field_validator("retry_delays_minutes")
    @classmethod
    def _some(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one delay")
        return value


THREE_DAYS_MINUTES = 3 * 24 * 60


class WebhookEndpointPolicy(_Section):
    """One `[[webhooks.endpoints]]` table: a receiver besides WEBHOOK_URL."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    url: str
    secrets: tuple[str, ...]
    types: tuple[Annotated[str, Field(min_length=1)], ...] = ("*",)

    _url = field_validator("url")(check_url)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not 1 <= len(value) <= 2:
            raise ValueError("one secret, or two during a rotation")
        for secret in value:
            check_secret(secret)
        return value


class WebhookPolicy(_Section):
    retry_delays_minutes: Annotated[tuple[Minutes, ...], Field(max_length=100)] = (
        1, 5, 30, 120, 300, 600, 1200, 1440, 1440, 1440)
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.2
    lease_minutes: Annotated[StrictInt, Field(gt=0, le=1440)] = 5
    batch: Count = 200
    concurrency: Annotated[StrictInt, Field(gt=0, le=100)] = 8
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    hold_after_unrecorded_claims: Annotated[StrictInt, Field(ge=1, le=100)] = 3
    endpoints: tuple[WebhookEndpointPolicy, ...] = ()

    @field_validator("retry_delays_minutes")
    @classmethod
    def _three_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if sum(value) < THREE_DAYS_MINUTES:
            raise ValueError(f"the delays must span at least three days ({THREE_DAYS_MINUTES}"
                             f" minutes), not {sum(value)}")
        return value

    @field_validator("endpoints")
    @classmethod
    def _unique(
        cls, value: tuple[WebhookEndpointPolicy, ...]
    ) -> tuple[WebhookEndpointPolicy, ...]:
        names = [endpoint.name for endpoint in value]
        for name in names:
            if name == DEFAULT_ENDPOINT:
                raise ValueError(f"the name {DEFAULT_ENDPOINT!r} is WEBHOOK_URL's")
            if names.count(name) > 1:
                raise ValueError(f"the name {name!r} is used twice")
        return value


class SenderPolicy(_Section):
    default_locale: str = "en"
    default_timezone: str = "UTC"

    _zone = field_validator("default_timezone")(check_zone)
    _locale = field_validator("default_locale")(check_locale)


class Policy(_Section):
    renewal: RenewalPolicy = RenewalPolicy()
    grace: GracePolicy = GracePolicy()
    payment: PaymentPolicy = PaymentPolicy()
    codes: CodePolicy = CodePolicy()
    invitations: InvitationPolicy = InvitationPolicy()
    catch_up: CatchUpPolicy = CatchUpPolicy()
    buckets: BucketPolicy = BucketPolicy()
    digest: DigestPolicy = DigestPolicy()
    send_window: SendWindowPolicy = SendWindowPolicy()
    schedule: SchedulePolicy = SchedulePolicy()
    shutdown: ShutdownPolicy = ShutdownPolicy()
    delivery: DeliveryPolicy = DeliveryPolicy()
    webhooks: WebhookPolicy = WebhookPolicy()
    sender: SenderPolicy = SenderPolicy()
    mail: MailPolicy = MailPolicy()
    dkim: tuple[DkimKeyPolicy, ...] = ()

    @model_validator(mode="after")
    def _fallback_is_signed(self) -> Policy:
        domains = [key.domain for key in self.dkim]
        for domain in domains:
            if domains.count(domain) > 1:
                raise ValueError(f"dkim: the domain {domain!r} has two keys")
        fallback = self.mail.fallback_from
        if fallback is not None and address_domain(fallback) not in domains:
            raise ValueError(f"mail.fallback_from: {fallback!r} is on a domain without a "
                             "[[dkim]] key, so it would not pass DMARC either")
        return self

    def signing_domains(self) -> frozenset[str]:
        return frozenset(key.domain for key in self.dkim)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


MAX_POLICY_BYTES = 1_000_000  # a policy file is a page of settings, not a data set


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    """A readable TOML file of reasonable size; anything else is a ConfigError naming
    `what` (a folder, a device, a binary file, a file that cannot be read)."""
    try:
        if not path.is_file():
            problem = "no such file" if not path.exists() else "not a regular file"
            raise ConfigError(what, f"{problem}: {path}")
        with path.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as error:
        raise ConfigError(what, f"cannot read {path}: {error.strerror or error}") from None
    if len(raw) > MAX_POLICY_BYTES:
        raise ConfigError(what, f"{path} is larger than {MAX_POLICY_BYTES // 1000} kB")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(what, f"{path} is not UTF-8 text (byte {error.start})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(what, f"{path} is not valid TOML ({error})") from None


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def build_policy(values: dict[str, Any]) -> Policy:
    """Validate a nested mapping into a Policy, or raise ConfigError naming the key."""
    try:
        return Policy.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        key = _key_of(first["loc"])
        if not key and ": " in message:  # a check across sections names its own key
            key, message = message.split(": ", 1)
        raise ConfigError(key, message) from None


def load_policy(override_file: Path | None = None) -> Policy:
    """The defaults of `config/policy.toml`, overridden by `override_file` if given."""
    values = _read_toml(resource_dir("config") / "policy.toml", "config/policy.toml")
    if override_file is not None:
        values = _merge(values, _read_toml(override_file, "WORKER_CONFIG"))
    return build_policy(values)
