"""Strict converters from one JSON value to the value stored, or `Invalid(message)`.

Strict means JSON's own types: "12" is not a number, 1 is not a boolean, 12.0 is not an
integer. Dates are "YYYY-MM-DD" strings; timestamps are ISO 8601 with an offset or `Z`
(converted to UTC), never naive.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Collection
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from babel import Locale, UnknownLocaleError
from email_validator import EmailNotValidError, validate_email

Converter = Callable[[Any], Any]

INT32_MAX = 2_147_483_647  # the INTEGER columns' range on PostgreSQL
ID_MAX_LENGTH = 64
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?P<offset>Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_COUNTRY = re.compile(r"[A-Za-z]{2}")


class Invalid(Exception):
    """The value is refused; `message` says why, without the path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def string(value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {json_type(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    if len(value) > max_length:
        raise Invalid(f"is too long ({len(value)} characters; at most {max_length})")
    return value


def identifier(value: Any) -> str:
    return string(value, ID_MAX_LENGTH)


def name(max_length: int) -> Converter:
    """A name that may go into an email header: no CR or LF."""

    def convert(value: Any) -> str:
        text = string(value, max_length)
        if "\r" in text or "\n" in text:
            raise Invalid("must not contain a line break (CR or LF)")
        return text

    return convert


@lru_cache(maxsize=65_536)
def _normalised_email(text: str) -> str:
    return validate_email(text, check_deliverability=False).normalized


def email(value: Any) -> str:
    text = string(value, 320)
    try:
        return _normalised_email(text)
    except EmailNotValidError as error:
        raise Invalid(f"not a valid email address {text!r}: {error}") from None


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone(value: Any) -> str:
    text = string(value, 64)
    if text not in _zones():
        raise Invalid(f"unknown timezone {text!r}")
    return text


@lru_cache(maxsize=1024)
def _locale(text: str) -> str:
    return str(Locale.parse(text.replace("-", "_")))


def locale(value: Any) -> str:
    """`fr`, `fr_CA` or `fr-CA`; stored as Babel writes it (`fr_CA`)."""
    text = string(value, 32)
    try:
        return _locale(text)
    except (UnknownLocaleError, ValueError, TypeError):
        raise Invalid(f"unknown locale {text!r}") from None


@lru_cache(maxsize=1)
def _territories() -> frozenset[str]:
    codes = (str(code) for code in Locale("en").territories)
    return frozenset(code for code in codes if _COUNTRY.fullmatch(code))


def country(value: Any) -> str:
    """A two-letter country code (ISO 3166-1), stored in capitals."""
    text = string(value, 2)
    if text.upper() not in _territories():
        raise Invalid(f"unknown country code {text!r} (expected two letters, as 'FR')")
    return text.upper()


def one_of(words: Collection[str]) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, not {json_type(value)}")
        if value not in words:
            raise Invalid(f"must be one of {', '.join(words)} (got {value!r})")
        return value

    return convert


def integer(minimum: int) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, not {json_type(value)}")
        if value < minimum:
            bound = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise Invalid(f"{bound} (got {value})")
        if value > INT32_MAX:
            raise Invalid(f"must be at most {INT32_MAX} (got {value})")
        return value

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {json_type(value)}")
    return value


def day(value: Any) -> date:
    if not isinstance(value, str):
        raise Invalid(f'must be a date as a "YYYY-MM-DD" string, not {json_type(value)}')
    if not _DATE.fullmatch(value):
        raise Invalid(f'must be a date written "YYYY-MM-DD" (got {value!r})')
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"impossible date {value!r}") from None


def moment(value: Any) -> datetime:
    """An instant: ISO 8601 with an offset or `Z`, returned in UTC."""
    if not isinstance(value, str):
        raise Invalid(f"must be an ISO 8601 timestamp string, not {json_type(value)}")
    match = _MOMENT.fullmatch(value)
    if match is None:
        raise Invalid(f'must be an ISO 8601 timestamp as "2027-01-10T09:30:00Z" (got {value!r})')
    if match.group("offset") is None:
        raise Invalid(f"needs a UTC offset or Z (got {value!r})")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"impossible timestamp {value!r}") from None
