"""A rendered notification as an email: the headers the README lists, a text and an HTML part.

Every header value that comes from data is made safe here, whatever rendered it and
whatever Python runs (CVE-2024-6923: some 3.11/3.12 releases let an encoded word or a
line break in a header value inject a header through `as_bytes()`):

- names and the subject are neutralised: line breaks and other control characters,
  Unicode line separators and bidi overrides become spaces, runs of whitespace one
  space, the `=?` that opens an encoded word is broken up, and the length is capped;
- addresses are never repaired: one holding a control character or `=?`, or that
  does not parse as a single addr-spec, is refused (`UnsafeHeader`).

Subject, From, To and Reply-To are then written by `PrefoldedHeader`, not by the email
package: on Python 3.11 its folder drops the space between two encoded words in about
one accented French subject or name in fifteen ("d’ÉlectricitéGénérale" in the reader's
mail client). Non-ASCII values are written as RFC 2047 B-encoded words, split between
characters, so every space is inside an encoded word and survives.

Building and serialising a message costs about ten renders (NOTES.md): delivery should
call `message_bytes` once and keep the bytes for its retries, with the same Message-ID.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy as email_policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy as EmailPolicyBase
from email.utils import format_datetime
from typing import Any

from worker.mail.render import RenderedEmail
from worker.rules.notices import AUDIENCES

POLICY = email_policy.SMTP  # CRLF line ends, as the wire and .eml files want them
MAX_NAME = 64
MAX_SUBJECT = 200
MAX_LINE = 78  # a Message-ID header longer than this would be folded
FALLBACK_DOMAIN = "localhost"
_SEPARATORS = frozenset({"Cc", "Zl", "Zp"})
_BIDI_OVERRIDES = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e"), " ")
_NOTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9._-]+@[A-Za-z0-9.-]+>")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_PLAIN_PHRASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '-]*")
_WORD_BYTES = 39  # 52 base64 characters: encoded words of 64, "Reply-To: " + one < 76
_FOLD_AT = 76  # RFC 2047: a line holding an encoded word is at most 76 characters


class UnsafeHeader(ValueError):
    """A value from data cannot go into a header safely (or a required one is missing)."""


# -- header values ---------------------------------------------------------------------


def header_text(value: str, limit: int) -> str:
    """`value` as one safe line of at most `limit` characters (names, subjects)."""
    value = value.translate(_BIDI_OVERRIDES)
    value = "".join(" " if unicodedata.category(ch) in _SEPARATORS else ch for ch in value)
    value = re.sub(" {2,}", " ", value.replace("=?", "= ?")).strip()
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeHeader(f"domain {domain!r} cannot be written in ASCII") from None


def address(email: str, name: str = "") -> Address:
    """An address header item; the address itself must be clean, the name is made so."""
    if not isinstance(email, str) or "=?" in email or any(
        unicodedata.category(ch) in _SEPARATORS or ch.isspace() for ch in email
    ):
        raise UnsafeHeader(f"refused address {email!r}")
    try:
        parsed = Address(addr_spec=email)
    except (ValueError, IndexError, HeaderParseError):
        raise UnsafeHeader(f"not an email address: {email!r}") from None
    if not parsed.username or not parsed.domain or not parsed.username.isascii():
        raise UnsafeHeader(f"not a deliverable address: {email!r}")
    return Address(header_text(name, MAX_NAME), parsed.username, _ascii_domain(parsed.domain))


# -- headers written by us -------------------------------------------------------------


def encoded_words(text: str) -> list[str]:
    """`text` as RFC 2047 B-encoded words (UTF-8), split between characters."""
    chunks: list[str] = []
    for char in text:
        if chunks and len((chunks[-1] + char).encode()) <= _WORD_BYTES:
            chunks[-1] += char
        else:
            chunks.append(char)
    return [f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode('ascii')}?=" for chunk in chunks]


def _text_tokens(text: str) -> list[str]:
    """Unstructured text: plain words when ASCII, else encoded words only."""
    return text.split(" ") if text.isascii() else encoded_words(text)


def _address_tokens(items: Sequence[Address]) -> list[str]:
    tokens: list[str] = []
    for index, item in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        name = item.display_name
        if not name:
            tokens.append(f"{item.addr_spec}{comma}")
            continue
        plain = _PLAIN_PHRASE.fullmatch(name) is not None
        tokens += [*(name.split(" ") if plain else encoded_words(name)),
                   f"<{item.addr_spec}>{comma}"]
    return tokens


@dataclass(frozen=True, slots=True)
class PrefoldedHeader:
    """A header the email package stores as is and folds by calling `fold` (the
    documented `email.policy` protocol for header objects: a `name` and `fold`)."""

    name: str
    text: str  # what a reader sees
    tokens: tuple[str, ...]  # folded between tokens, never inside one

    def fold(self, *, policy: EmailPolicyBase) -> str:
        lines, line = [], f"{self.name}:"
        for token in self.tokens:
            if len(line) + 1 + len(token) > _FOLD_AT and line != f"{self.name}:":
                lines.append(line)
                line = ""
            line += f" {token}"
        return policy.linesep.join([*lines, line]) + policy.linesep

    def __str__(self) -> str:
        return self.text


def subject_header(subject: str) -> PrefoldedHeader:
    text = header_text(subject, MAX_SUBJECT)
    return PrefoldedHeader("Subject", text, tuple(_text_tokens(text)))


def address_header(name: str, items: Sequence[Address]) -> PrefoldedHeader:
    return PrefoldedHeader(name, ", ".join(str(item) for item in items),
                           tuple(_address_tokens(items)))


# -- Message-ID ------------------------------------------------------------------------


def _message_id_domain(reseller_email: str, room: int) -> str:
    """The reseller's mail domain, or as many of its last labels as fit in `room`."""
    try:
        labels = address(reseller_email).domain.split(".")
    except UnsafeHeader:
        return FALLBACK_DOMAIN
    for start in range(len(labels) - 1):
        candidate = ".".join(labels[start:])
        if len(candidate) <= room and re.fullmatch(r"[A-Za-z0-9.-]+", candidate):
            return candidate
    return FALLBACK_DOMAIN


def message_id_for(notification_id: int | str, reseller_email: str, *, salt: str = "") -> str:
    """`<notification-42.3f9a0c1b2d@nuage.example>`: stable for one notification, so a
    retry reuses it; short enough never to be folded. `salt` (an installation name, the
    notice's key) keeps two databases that reuse ids from minting the same one."""
    text = str(notification_id)
    if not _NOTIFICATION_ID.fullmatch(text):
        raise ValueError(f"not a notification id: {notification_id!r}")
    digest = hashlib.sha256(f"{text}|{reseller_email}|{salt}".encode()).hexdigest()[:10]
    left = f"notification-{text}.{digest}"
    room = MAX_LINE - len("Message-ID: <@>") - len(left)
    return f"<{left}@{_message_id_domain(reseller_email, room)}>"


def _checked_message_id(message_id: str) -> str:
    if not _MESSAGE_ID.fullmatch(message_id) or len(message_id) > MAX_LINE - 12:
        raise UnsafeHeader(f"refused Message-ID {message_id!r}")
    return message_id


# -- the message -----------------------------------------------------------------------


def _payload(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row["payload"]
    return dict(json.loads(raw) if isinstance(raw, str) else raw)


def _recipients(row: Mapping[str, Any], payload: Mapping[str, Any]) -> list[Address]:
    emails: Sequence[str] = row["recipients"] or ()
    if not emails:
        raise UnsafeHeader("a notification without recipients")
    names = list(payload.get("recipient_names") or ())
    if len(names) != len(emails):
        names = [""] * len(emails)
    return [address(email, str(name or "")) for email, name in zip(emails, names, strict=True)]


def _kind(row: Mapping[str, Any]) -> str:
    kind = str(row["kind"])
    if kind not in AUDIENCES:
        raise UnsafeHeader(f"unknown notification kind {kind!r}")
    return kind


def _date(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the Date of a message needs an aware datetime")
    return format_datetime(moment)


def build_message(
    row: Mapping[str, Any], rendered: RenderedEmail, *, message_id: str,
    date: datetime | None,
) -> EmailMessage:
    """The email of one notification row (see `worker.passes.effects`), from the reseller.

    `row` needs `kind`, `recipients` and `payload` (a SQLAlchemy row: `row._mapping`).
    `date=None` leaves the Date header out, for a caller that stamps it at each
    hand-over of the stored bytes (`worker.mail.compose.stamp_date`)."""
    payload = _payload(row)
    reseller = payload["reseller"]
    sender_name = str(reseller.get("sender_name") or reseller.get("name") or "")
    message = EmailMessage(policy=POLICY)
    reply_to = reseller.get("reply_to") or reseller["email"]
    message["From"] = address_header("From", [address(reseller["email"], sender_name)])
    message["To"] = address_header("To", _recipients(row, payload))
    message["Reply-To"] = address_header("Reply-To", [address(reply_to, sender_name)])
    message["Subject"] = subject_header(rendered.subject)
    if date is not None:
        message["Date"] = _date(date)
    message["Message-ID"] = _checked_message_id(message_id)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Notification-Kind"] = _kind(row)
    _add_parts(message, rendered)
    return message


def _add_parts(message: EmailMessage, rendered: RenderedEmail) -> None:
    """Text, then HTML (the part clients prefer comes last); Content-* headers after
    them, as `set_content` clears those of the message."""
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the part
    if _LANGUAGE.fullmatch(rendered.language):
        message["Content-Language"] = rendered.language


def message_bytes(
    row: Mapping[str, Any], rendered: RenderedEmail, *, message_id: str,
    date: datetime | None,
) -> bytes:
    """`build_message` serialised (CRLF line ends): what delivery stores and sends."""
    return build_message(row, rendered, message_id=message_id, date=date).as_bytes()
