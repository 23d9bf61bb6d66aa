"""A bounce report read: who failed, for good or for now, why, and which message it was.

The common forms are left to flufl.bounce (RFC 3464 DSNs and the non-standard ones:
Exim's `X-Failed-Recipients`, Postfix's, Microsoft's and a dozen more). RFC 3464's own
per-recipient fields (`Status`, `Diagnostic-Code`, `Final-Recipient`) come from the
standard `email` package, which parses `message/delivery-status` into header blocks.

- A failure is permanent when its Status is 5.x.x, temporary when 4.x.x (or its
  Action `delayed`); without a Status, as flufl.bounce classes it.
- Without any failure the report is no bounce (`NotABounce`): an auto-reply, a
  challenge, a message that was never a report.
- Our envelope senders (`bounces+<token>.<check>@…`) are searched in the headers a
  mail server adds on delivery (To, Delivered-To, X-Original-To, Envelope-To) and in
  the whole text, so that a report whose recipient field is mangled is still matched.

Nothing here reads the database or the clock.

Imports: flufl.bounce, the standard library, worker.mail.senders.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr

from flufl.bounce import all_failures

from worker.mail.senders import BounceAddress, parse_bounce_addresses

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"\b([45]\d\d)[ -]")
_MESSAGE_ID = re.compile(r"(?im)^message-id:\s*(<[^>\s]+>)")
_DELIVERED_TO = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")


class NotABounce(ValueError):
    """The bytes hold no failure report."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient's failure; `address` empty when the report named none we could read
    (the envelope sender then says who)."""

    address: str
    permanent: bool
    status: str | None
    diagnostic: str | None


@dataclass(frozen=True, slots=True)
class Report:
    digest: str  # SHA-256 of the report's bytes: the same report read twice is one
    failures: tuple[Failure, ...]
    envelopes: tuple[BounceAddress, ...]
    message_ids: tuple[str, ...]


def read_report(data: bytes, bounce_domain: str | None = None) -> Report:
    """The report in `data` (module docstring), or NotABounce."""
    message = email.message_from_bytes(data)
    text = _all_text(message)
    fields = _dsn_fields(message)
    temporary, permanent = all_failures(message)
    found: dict[str, Failure] = {}
    for raw, is_permanent in [*((a, False) for a in temporary), *((a, True) for a in permanent)]:
        address = raw.decode("ascii", "replace").strip().lower()
        status, diagnostic = fields.get(address, (None, None))
        found[address] = _failure(address, is_permanent, status, diagnostic, text)
    for address, (status, diagnostic) in fields.items():
        if address not in found and status is not None and status[0] in "45":
            found[address] = Failure(address, status[0] == "5", status, diagnostic)
    envelopes = _envelopes(message, text, bounce_domain)
    if not found and envelopes:  # a mangled report: its envelope names the recipient
        status = _status_in(text)
        if status is not None and status[0] in "45":
            found[""] = Failure("", status[0] == "5", status, _diagnostic_in(text))
    if not found:
        raise NotABounce("no failed recipient found: not a delivery status notification")
    own_id = (message.get("Message-ID") or "").strip()
    quoted = tuple(dict.fromkeys(m for m in _MESSAGE_ID.findall(text) if m != own_id))
    return Report(hashlib.sha256(data).hexdigest(), tuple(found.values()), envelopes, quoted)


def _failure(address: str, permanent: bool, status: str | None, diagnostic: str | None,
             text: str) -> Failure:
    if status is not None and status[0] in "45":
        return Failure(address, status[0] == "5", status, diagnostic)
    near = _around(text, address)
    status = _status_in(near)
    if status is not None and status[0] != ("5" if permanent else "4"):
        status = None  # a status beside the address that says otherwise is not its own
    return Failure(address, permanent, status or ("5.0.0" if permanent else "4.0.0"),
                   diagnostic or (_diagnostic_in(near) if near else None))


def _dsn_fields(message: Message) -> dict[str, tuple[str | None, str | None]]:
    """{recipient: (Status, Diagnostic-Code)} of every RFC 3464 per-recipient block."""
    fields: dict[str, tuple[str | None, str | None]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            if not isinstance(block, Message):
                continue
            recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
            if not recipient:
                continue
            address = parseaddr(str(recipient).split(";", 1)[-1].strip())[1].lower()
            status_match = _STATUS.search(str(block.get("Status", "")))
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            diagnostic = diagnostic.split(";", 1)[-1].strip() if diagnostic else ""
            fields[address] = (status_match.group(0) if status_match else None,
                               diagnostic or None)
    return fields


def _all_text(message: Message) -> str:
    """Every text part and quoted header block, decoded, in one string."""
    chunks = [str(value) for _, value in message.items()]
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        raw = part.get_payload()
        if isinstance(payload, bytes):
            chunks.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
        elif isinstance(raw, str):
            chunks.append(raw)
    for part in message.walk():  # message/rfc822 parts: their headers
        if part.get_content_type() == "message/rfc822" and part.is_multipart():
            for inner in part.get_payload():
                if isinstance(inner, Message):
                    chunks += [f"{name}: {value}" for name, value in inner.items()]
    return "\n".join(chunks)


def _envelopes(message: Message, text: str, domain: str | None) -> tuple[BounceAddress, ...]:
    headers = " ".join(str(v) for name in _DELIVERED_TO for v in message.get_all(name, []))
    found = parse_bounce_addresses(headers, domain) or parse_bounce_addresses(text, domain)
    return tuple(dict.fromkeys(found))


def _around(text: str, address: str) -> str:
    """The first few lines after a mention of `address` that hold a status code."""
    lowered, index = text.lower(), -1
    while address:
        index = lowered.find(address, index + 1)
        if index < 0:
            break
        near = "\n".join(text[index:].splitlines()[:6])
        if _STATUS.search(near):
            return near
    return ""


def _status_in(text: str) -> str | None:
    found = _STATUS.search(text)
    return found.group(0) if found else None


def _diagnostic_in(text: str) -> str | None:
    """The first line that reads like a server's reply (`550 5.1.1 …`)."""
    for line in text.splitlines():
        if _SMTP_REPLY.search(line) and _STATUS.search(line):
            return " ".join(line.split())[:500]
    return None
