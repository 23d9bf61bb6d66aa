"""Strict converters from one JSON value to the value stored, or `Invalid(message)`.

Strict means JSON's own types: "12" is not a number, 1 is not a boolean, 12.0 is not an
integer. Dates are "YYYY-MM-DD" strings; timestamps are ISO 8601 with an offset or `Z`
(converted to UTC), never naive.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from babel import Locale
from email_validator import EmailNotValidError, validate_email

from worker.config.bounds import (
    check_day,
    check_locale,
    check_moment,
    check_zone,
    hidden_character,
    visible,
)

Converter = Callable[[Any], Any]

INT32_MAX = 2_147_483_647  # the INTEGER columns' range on PostgreSQL
ID_MAX_LENGTH = 64
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MOMENT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?P<offset>Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_COUNTRY = re.compile(r"[A-Za-z]{2}")
# CLDR's two-letter regions that are no country of ISO 3166-1: exceptional reservations
# (AC, CP, CQ, DG, EA, IC, TA), unions (EU, EZ, UN), outlying Oceania (QO), the
# pseudo-locales (XA, XB) and "unknown region" (ZZ). Kosovo (XK) is kept: it is in use.
_NOT_COUNTRIES = frozenset({"AC", "CP", "CQ", "DG", "EA", "IC", "TA", "EU", "EZ", "UN",
                            "QO", "XA", "XB", "ZZ"})
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


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


def shown(text: str, limit: int = 80) -> str:
    """A value quoted for a message: escaped (no control character reaches a terminal)
    and cut short (a 50 MB string must not become a 50 MB error line)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def key_shown(key: str) -> str:
    """A key of the file as a path part: as is when it is a plain word, else quoted."""
    return key if _PLAIN_KEY.fullmatch(key) else shown(key, 40)


def string(value: Any, max_length: int) -> str:
    """Text that every backend stores and every header and log line can carry.

    Control characters (C0, DEL, C1: NUL is refused by PostgreSQL, CR and LF split a
    header), the line and paragraph separators U+2028/U+2029 (Python's `splitlines`
    breaks on them), unpaired surrogates (`"\\ud800"` decodes but is not UTF-8) and
    invisible format characters (zero-width space, byte-order mark, bidirectional marks:
    `"c1\\u200b"` would be a second customer that looks like `"c1"`) are refused
    wherever they are (`worker.config.bounds`).
    """
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {json_type(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    if len(value) > max_length:
        raise Invalid(f"is too long ({len(value)} characters; at most {max_length})")
    hidden = hidden_character(value)
    if hidden is not None:
        at, char = hidden
        raise Invalid(_unsafe_message(char, at))
    return value


def _unsafe_message(char: str, at: int) -> str:
    if char in "\r\n":
        return "must not contain a line break (CR or LF)"
    if "\ud800" <= char <= "\udfff":
        return f"must not contain an unpaired surrogate (U+{ord(char):04X} at {at})"
    if char in "\u2028\u2029":
        return f"must not contain a line separator (U+{ord(char):04X} at {at})"
    if unicodedata.category(char) == "Cc":
        return f"must not contain a control character (U+{ord(char):04X} at {at})"
    return (f"must not contain an invisible character "
            f"(U+{ord(char):04X} {unicodedata.name(char, 'unnamed')} at {at})")


def identifier(value: Any) -> str:
    """An id: no whitespace at all, so that `" c1"` and `"c1"` cannot be two records."""
    text = string(value, ID_MAX_LENGTH)
    if any(char.isspace() for char in text):
        raise Invalid(f"must not contain whitespace (got {text!r})")
    return text


def name(max_length: int) -> Converter:
    """A name that may go into an email header: no line break, no encoded word (`=?`)."""

    def convert(value: Any) -> str:
        text = _no_encoded_word(string(value, max_length))
        if not visible(text):
            raise Invalid(f"must show at least one letter, digit or sign (got {shown(text)})")
        return text

    return convert


def _no_encoded_word(text: str) -> str:
    """`=?UTF-8?Q?=0A?=` decodes to a line break in some mail readers and in Python's
    own header parser (CVE-2024-6923): refused in anything that reaches a header."""
    if "=?" in text:
        raise Invalid(f"must not contain an encoded word ('=?'; got {text!r})")
    return text


@lru_cache(maxsize=65_536)
def _normalised_email(text: str) -> str:
    return validate_email(text, check_deliverability=False, allow_smtputf8=False).normalized


def email(value: Any) -> str:
    """An address the SMTP path can send to: the local part (before `@`) in ASCII, since
    the transport does not speak SMTPUTF8; an internationalised domain is fine (it is
    written in ASCII, as IDNA, in the headers and the envelope)."""
    text = _no_encoded_word(string(value, 320))
    try:
        return _normalised_email(text)
    except EmailNotValidError as error:
        raise Invalid(f"not a valid email address {text!r}: {error}") from None


def timezone(value: Any) -> str:
    """An IANA timezone naming a place (not `localtime`, not `Factory`)."""
    text = string(value, 64)
    try:
        return check_zone(text)
    except ValueError as error:
        raise Invalid(str(error)) from None


def locale(value: Any) -> str:
    """`fr`, `fr_CA` or `fr-CA` naming a real language; stored as Babel writes it
    (`fr_CA`)."""
    text = string(value, 32)
    try:
        return check_locale(text)
    except ValueError as error:
        raise Invalid(str(error)) from None


@lru_cache(maxsize=1)
def _territories() -> frozenset[str]:
    codes = (str(code) for code in Locale("en").territories)
    return frozenset(code for code in codes
                     if _COUNTRY.fullmatch(code) and code not in _NOT_COUNTRIES)


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
            raise Invalid(f"must be one of {', '.join(words)} (got {shown(value)})")
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
        raise Invalid(f'must be a date written "YYYY-MM-DD" (got {shown(value)})')
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"impossible date {value!r}") from None
    try:
        return check_day(parsed)
    except ValueError as error:
        raise Invalid(str(error)) from None


def moment(value: Any) -> datetime:
    """An instant: ISO 8601 with an offset or `Z`, returned in UTC."""
    if not isinstance(value, str):
        raise Invalid(f"must be an ISO 8601 timestamp string, not {json_type(value)}")
    match = _MOMENT.fullmatch(value)
    if match is None:
        raise Invalid('must be an ISO 8601 timestamp as "2027-01-10T09:30:00Z" '
                      f"(got {shown(value)})")
    if match.group("offset") is None:
        raise Invalid(f"needs a UTC offset or Z (got {value!r})")
    try:
        parsed = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"impossible timestamp {value!r}") from None
    try:
        return check_moment(parsed)
    except ValueError as error:
        raise Invalid(str(error)) from None
