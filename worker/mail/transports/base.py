"""What every mailer promises: hand over ready bytes, say what the server made of them.

A mailer never decides what happens to a notification; it reports, per recipient, one
`Verdict`: the server took the message, refused it for now (try again later), or refused
it for good. Server replies are classified here, once, by `classify`:

- 2xx: accepted.
- 4xx, a dropped connection, a timeout, a connection that cannot be opened or secured:
  transient (RFC 5321 §4.2.1: the same request may succeed later).
- 5xx: permanent, except 552 in answer to RCPT, which RFC 5321 §4.5.3.1.10 says to
  treat as 452 ("too many recipients", a temporary condition).

A failure that concerns the whole message (421 on connect, 554 after DATA, a dropped
connection) is reported as the same reply for each recipient of the attempt, so the
outbox has one shape to apply.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


class Stage(enum.StrEnum):
    """Where in the SMTP dialogue a reply came: it changes the meaning of 552."""

    CONNECT = "connect"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


def classify(code: int | None, stage: Stage) -> Verdict:
    """The verdict of one server reply; `None` means no reply (dropped, timed out)."""
    if code is None:
        return Verdict.TRANSIENT
    if 200 <= code < 300:
        return Verdict.ACCEPTED
    if code == 552 and stage is Stage.RCPT:
        return Verdict.TRANSIENT
    if 500 <= code < 600:
        return Verdict.PERMANENT
    return Verdict.TRANSIENT


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to hand over: envelope and bytes (headers included)."""

    key: str  # a file-safe name, unique per notification ("00000042-grace_ending-customer")
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server said about one recipient."""

    address: str
    verdict: Verdict
    code: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """The replies of one attempt, one per recipient of the attempt."""

    replies: tuple[Reply, ...]

    @classmethod
    def for_all(
        cls, recipients: Iterable[str], verdict: Verdict, code: int | None, text: str
    ) -> Outcome:
        return cls(tuple(Reply(address, verdict, code, text) for address in recipients))

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.replies if r.verdict is Verdict.ACCEPTED)


class DeliveryFailure(Exception):
    """A failure of a whole attempt, already classified. Mailers raise it internally;
    `send` turns it into an `Outcome`, and the outbox accepts it from any mailer."""

    verdict: Verdict = Verdict.TRANSIENT

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    def outcome(self, recipients: Iterable[str]) -> Outcome:
        return Outcome.for_all(recipients, self.verdict, self.code, self.text)


class TransientFailure(DeliveryFailure):
    """Try again later: 4xx, no connection, timeout, TLS or AUTH trouble."""

    verdict = Verdict.TRANSIENT


class PermanentFailure(DeliveryFailure):
    """The server refused the message for good (5xx)."""

    verdict = Verdict.PERMANENT


def failure_for(code: int | None, text: str, stage: Stage) -> DeliveryFailure:
    """The exception matching `classify(code, stage)` (an accepting code is a bug)."""
    verdict = classify(code, stage)
    if verdict is Verdict.PERMANENT:
        return PermanentFailure(text, code)
    if verdict is Verdict.TRANSIENT:
        return TransientFailure(text, code)
    raise ValueError(f"{code} is not a failure")


class Mailer(Protocol):
    """Hands messages to a server (or a directory, or memory).

    `send` may run `concurrency` times at once; `close` drops open connections and
    leaves the mailer usable (it reconnects on the next `send`).
    """

    @property
    def description(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    async def send(self, message: Outgoing) -> Outcome: ...

    async def close(self) -> None: ...
