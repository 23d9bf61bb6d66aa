"""A notice's message: built once from its row, stamped with its Date at each hand-over.

`build_for` renders the row's payload (worker.mail.render) and makes the MIME message
(worker.mail.messages) without a Date header, From the sender that worker.mail.senders
chooses (the reseller, or the fallback address in its name: `builder_for`). The
Message-ID is the row's own, or minted once from its id and once-only key. `stamp_date`
adds the Date of one hand-over: a retry of an unsigned message sends the very same bytes
but for that header (a signed one: worker.mail.dkim).

Imports: worker.mail.render, worker.mail.messages, worker.mail.senders, worker.config.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Any

from sqlalchemy import Row

from worker.config.policy import Policy
from worker.mail.messages import message_bytes, message_id_for
from worker.mail.render import render_notification
from worker.mail.senders import Senders

Builder = Callable[[Row[Any]], tuple[bytes, str]]


def build_for(row: Row[Any], senders: Senders | None = None) -> tuple[bytes, str]:
    """The message of one notification row, without a Date header, and its Message-ID.

    The Message-ID is the row's own if it has one, else minted from its id, salted with
    its once-only key so that two databases reusing ids never mint the same one. With
    `senders`, the From, Reply-To and envelope are theirs (worker.mail.senders)."""
    mapping: dict[str, Any] = dict(row._mapping)
    message_id = mapping["message_id"] or message_id_for(
        mapping["id"], str(mapping["payload"]["reseller"]["email"]),
        salt="|".join(str(mapping[k]) for k in ("kind", "ref", "occasion", "audience")))
    rendered = render_notification(mapping)
    if senders is not None and senders.falls_back(str(mapping["payload"]["reseller"]["email"])):
        payload = dict(mapping["payload"])
        payload["reseller"] = senders.as_sender(payload["reseller"])
        mapping["payload"] = payload
    return message_bytes(mapping, rendered, message_id=message_id, date=None), message_id


def builder_for(policy: Policy) -> Builder:
    """The Builder of the policy's senders (`build_for` itself when nothing changes)."""
    senders = Senders.from_policy(policy)
    return partial(build_for, senders=senders) if senders.fallback_from else build_for


_DATE_LINE = re.compile(rb"^date:[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def stamp_date(data: bytes, when: datetime) -> bytes:
    """`data` with a Date header for `when` (replacing the one it had, if any)."""
    blank = data.find(b"\r\n\r\n")
    if blank >= 0:
        head_length, newline = blank + 2, b"\r\n"
    else:
        blank = data.find(b"\n\n")
        head_length, newline = (blank + 1 if blank >= 0 else len(data)), b"\n"
    line = b"Date: " + format_datetime(when.astimezone(UTC)).encode("ascii") + newline
    head = data[:head_length]
    if _DATE_LINE.search(head):
        return _DATE_LINE.sub(lambda _: line, head, count=1) + data[head_length:]
    return line + data
