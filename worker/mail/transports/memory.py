"""The in-memory twin of the SMTP mailer: same verdicts, no network.

It follows a `Script` (what the server answers at each step); the test SMTP server in
`testkit/smtp.py` follows the same `Script`, so one contract test can run against
both and expect the same `Outcome`. Like Django's locmem backend it still checks the
message: a Message-ID equal to the envelope's, a Date, From and To headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.parser import BytesHeaderParser

from worker.mail.transports.base import (
    DeliveryFailure,
    Outcome,
    Outgoing,
    Reply,
    Stage,
    TransientFailure,
    Verdict,
    classify,
    failure_for,
)

TEXTS = {
    220: "ready", 250: "OK", 421: "4.3.2 Service not available, closing channel",
    450: "4.2.1 Mailbox busy", 451: "4.3.0 Local error in processing, try later",
    452: "4.5.3 Too many recipients", 550: "5.1.1 No such user here",
    552: "5.3.4 Message too big for system", 554: "5.6.0 Transaction failed",
}
NO_ANSWER = "timed out waiting for the server's greeting"
DROPPED = "connection lost during DATA"


def text_of(code: int) -> str:
    return TEXTS.get(code, "scripted reply")


@dataclass
class Script:
    """What a scripted server answers. Mutable: a test changes it between passes."""

    greeting: int = 220
    silent: bool = False  # accepts the connection and never says a word
    mail: int = 250
    rcpt: dict[str, int] = field(default_factory=dict)  # per address; 250 otherwise
    data: int = 250
    drop_in_data: bool = False  # closes the connection after the data, before replying

    def rcpt_code(self, address: str) -> int:
        return self.rcpt.get(address.lower(), 250)


@dataclass(frozen=True, slots=True)
class Delivered:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class MemoryMailer:
    """Keeps what it accepted in `delivered`; answers as `script` says."""

    def __init__(self, script: Script | None = None, *, concurrency: int = 1) -> None:
        self.script = script or Script()
        self.delivered: list[Delivered] = []
        self.attempts = 0
        self._concurrency = concurrency

    @property
    def description(self) -> str:
        return "memory"

    @property
    def concurrency(self) -> int:
        return self._concurrency

    async def send(self, message: Outgoing) -> Outcome:
        check_message(message)
        self.attempts += 1
        try:
            return self._transaction(message)
        except DeliveryFailure as failure:
            return failure.outcome(message.recipients)

    async def close(self) -> None:
        return None

    def _transaction(self, message: Outgoing) -> Outcome:
        script = self.script
        if script.silent:
            raise TransientFailure(NO_ANSWER)
        if script.greeting != 220:
            raise failure_for(script.greeting, text_of(script.greeting), Stage.CONNECT)
        if script.mail != 250:
            raise failure_for(script.mail, text_of(script.mail), Stage.MAIL)
        replies = {address: _rcpt_reply(address, script.rcpt_code(address))
                   for address in message.recipients}
        accepted = [a for a, r in replies.items() if r.verdict is Verdict.ACCEPTED]
        if accepted:
            for address, reply in _data_replies(accepted, script).items():
                replies[address] = reply
            taken = tuple(a for a in accepted if replies[a].verdict is Verdict.ACCEPTED)
            if taken:
                self.delivered.append(Delivered(message.sender, taken, message.data))
        return Outcome(tuple(replies[address] for address in message.recipients))


def _rcpt_reply(address: str, code: int) -> Reply:
    return Reply(address, classify(code, Stage.RCPT), code, text_of(code))


def _data_replies(accepted: list[str], script: Script) -> dict[str, Reply]:
    if script.drop_in_data:
        return {a: Reply(a, Verdict.TRANSIENT, None, DROPPED) for a in accepted}
    verdict = classify(script.data, Stage.DATA)
    return {a: Reply(a, verdict, script.data, text_of(script.data)) for a in accepted}


def check_message(message: Outgoing) -> None:
    """Refuse a message a real server would choke on or that breaks our own promises."""
    headers = BytesHeaderParser().parsebytes(message.data)
    if headers["Message-ID"] != message.message_id:
        raise ValueError(f"Message-ID header {headers['Message-ID']!r} is not "
                         f"{message.message_id!r}")
    for name in ("Date", "From", "To"):
        if headers[name] is None:
            raise ValueError(f"message {message.key} has no {name} header")
    if not message.recipients:
        raise ValueError(f"message {message.key} has no recipients")
