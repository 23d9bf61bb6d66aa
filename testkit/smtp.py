"""A real SMTP server (aiosmtpd) for the delivery tests and benchmarks, in two forms.

- `smtp_server()`: in this process, in its own thread and event loop, scripted like the
  in-memory twin: it follows a `worker.mail.transports.memory.Script` (the same object
  the twin follows): its greeting (421, or silence), its replies to MAIL, RCPT and DATA,
  and a connection dropped after the data. STARTTLS, implicit TLS and AUTH use a
  certificate issued by a throwaway CA (trustme) for `localhost` and 127.0.0.1; clients
  trust that CA alone. It keeps every message it accepts.
- `Sink` (`running_sink()`): `python -m testkit.smtp` in a process of its own, for the
  fault tests and the delivery benchmarks: it outlives the senders they kill, runs on the
  machine's other core, and accepts every message, `delay` seconds after its data (so
  that messages are in flight when a test strikes).

Both note the Message-ID of every message they accept before they say 250 (`Recorder`),
so an ID is there for every message the server took: what a customer would have
received. aiosmtpd's `Controller(port=0)` breaks its own start-up check, so a free port
is picked first; each server is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from testkit.net import HOST, free_port
from worker.mail.transports.memory import Script, text_of

USER, PASSWORD = "mailer", "s3cret p@ss"
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class Certificates:
    """A CA trusted by the client only, and the server's certificate issued by it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def certificates() -> Certificates:
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", HOST)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issued.configure_cert(server)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority.configure_trust(client)
    return Certificates(server, client)


class Recorder:
    """aiosmtpd's DATA hook: accepts the message, `delay` seconds after its data; notes
    its Message-ID (`message_ids`, in order) and, if `keep`, the whole message."""

    def __init__(self, *, keep: bool = True, delay: float = 0.0) -> None:
        self.keep = keep
        self.delay = delay
        self.received: list[Received] = []
        self.message_ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope,
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or b""
        found = _MESSAGE_ID.search(content)
        with self.lock:
            self.message_ids.append(found.group(1).decode() if found else "<none>")
            if self.keep:
                self.received.append(Received(str(envelope.mail_from),
                                              tuple(envelope.rcpt_tos), content))
        return "250 2.0.0 Queued"

    def since(self, mark: int) -> list[str]:
        """The Message-IDs accepted after the first `mark` ones."""
        with self.lock:
            return self.message_ids[mark:]

    def count(self, mark: int = 0) -> int:
        """How many messages were accepted after the first `mark` ones."""
        with self.lock:
            return max(0, len(self.message_ids) - mark)


# --- in this process, scripted ---------------------------------------------------------


class Handler(Recorder):
    """aiosmtpd hooks answering as the script says; keeps what it accepted."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.connection_limit: int | None = None  # 421 to any connection beyond it
        self.active = 0
        self.logins: list[tuple[str, bool]] = []  # (user name, over TLS) per AUTH

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """Accepts USER / PASSWORD only; records every attempt and whether it was over TLS."""
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()) == (USER, PASSWORD)
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        self.logins.append((login, session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:
        if self.script.mail != 250:
            return f"{self.script.mail} {text_of(self.script.mail)}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:
        code = self.script.rcpt_code(address)
        if code != 250:
            return f"{code} {text_of(code)}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope,
    ) -> str:
        if self.script.drop_in_data:
            assert server.transport is not None
            server.transport.close()
            await asyncio.Event().wait()  # the connection is gone; wait to be cancelled
        if self.script.data != 250:
            return f"{self.script.data} {text_of(self.script.data)}"
        return await super().handle_DATA(server, session, envelope)


class ScriptedSMTP(SMTP):
    """Says the scripted greeting (or nothing at all) before the usual dialogue."""

    def __init__(self, handler: Handler, counter: list[int], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.scripted = handler
        self.counter = counter

    @property
    def script(self) -> Script:
        return self.scripted.script

    async def _handle_client(self) -> None:
        self.counter.append(1)
        assert self.transport is not None
        if self.script.silent:
            try:
                await self._reader.read()  # until the client gives up and hangs up
            finally:
                self.transport.close()
            return
        limit = self.scripted.connection_limit
        greeting = self.script.greeting
        if limit is not None and self.scripted.active >= limit:
            greeting = 421
        if greeting != 220:
            await self.push(f"{greeting} {text_of(greeting)}")
            self.transport.close()
            return
        self.scripted.active += 1
        try:
            await super()._handle_client()
        finally:
            self.scripted.active -= 1


class ScriptedController(Controller):
    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connections: list[int] = []

    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, self.connections, **self.SMTP_kwargs)


@dataclass
class TestServer:
    port: int
    script: Script
    handler: Handler
    controller: ScriptedController
    authenticated: list[bool] = field(default_factory=list)

    __test__ = False  # not a test class, whatever pytest thinks of the name

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def connections(self) -> int:
        """Connections the client opened (the controller's own start-up probe excluded)."""
        return len(self.controller.connections) - 1

    def url(self, scheme: str = "smtp", *, credentials: bool = False) -> str:
        auth = f"{USER}:{PASSWORD.replace(' ', '%20').replace('@', '%40')}@" if credentials else ""
        return f"{scheme}://{auth}{HOST}:{self.port}"


@contextlib.contextmanager
def smtp_server(
    *, script: Script | None = None, certs: Certificates | None = None,
    starttls: bool = False, implicit_tls: bool = False, auth: bool = False,
    connection_limit: int | None = None, auth_in_clear: bool = False,
) -> Iterator[TestServer]:
    """A running server; `starttls` offers (and requires) STARTTLS, `auth` requires AUTH
    (over TLS only, unless `auth_in_clear`: then AUTH is offered, not required, without
    TLS, as a careless relay would), `connection_limit` answers 421 to connections
    beyond it. The script and the limit apply once the server has started."""
    plan = script or Script()
    handler = Handler(Script())
    options: dict[str, Any] = {"server_hostname": "localhost", "ident": "test ESMTP"}
    if starttls and certs is not None:
        options.update(tls_context=certs.server, require_starttls=True)
    if auth:
        options.update(authenticator=handler.authenticate, auth_required=not auth_in_clear,
                       auth_require_tls=not auth_in_clear)
    controller = ScriptedController(
        handler, hostname=HOST, port=free_port(),
        ssl_context=certs.server if implicit_tls and certs is not None else None, **options)
    controller.start()
    handler.script = plan
    handler.connection_limit = connection_limit
    try:
        yield TestServer(controller.port, plan, handler, controller)
    finally:
        controller.stop()


# --- in a process of its own: the sink ---------------------------------------------------


def serve_sink(delay: float) -> None:
    """The sink's process: serve on a free port, print it, then answer on stdin until its
    end: `mark` (messages accepted so far), `count N` (accepted after the first N),
    `stats N` (those and their distinct Message-IDs), `received N` (a JSON object:
    times accepted per Message-ID)."""
    recorder = Recorder(keep=False, delay=delay)
    controller = Controller(recorder, hostname=HOST, port=free_port(), server_hostname="sink")
    controller.start()
    print(controller.port, flush=True)
    for line in sys.stdin:
        command, _, mark = line.strip().partition(" ")
        if command == "mark":
            print(recorder.count(), flush=True)
        elif command == "count":
            print(recorder.count(int(mark)), flush=True)
        elif command == "stats":
            ids = recorder.since(int(mark))
            print(len(ids), len(set(ids)), flush=True)
        elif command == "received":
            print(json.dumps(Counter(recorder.since(int(mark)))), flush=True)
    controller.stop()


class Sink:
    """The sink's process, seen from here: its `url`, and what it accepted, counted from
    a `mark()` (0: from its start). It ends when closed, or at the end of its stdin (when
    this process ends)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "testkit.smtp", "--delay", str(delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port.isdigit():
            self.close()
            raise RuntimeError("the SMTP sink did not start")
        self.port = int(port)

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def mark(self) -> int:
        """An offset: `received(mark)` counts only what arrives after it."""
        return int(self._ask("mark"))

    def count(self, since: int = 0) -> int:
        """Messages accepted (after `since`)."""
        return int(self._ask(f"count {since}"))

    def stats(self, since: int = 0) -> tuple[int, int]:
        """(messages accepted, distinct Message-IDs) after `since`."""
        received, distinct = self._ask(f"stats {since}").split()
        return int(received), int(distinct)

    def received(self, since: int = 0) -> Counter[str]:
        """Messages accepted per Message-ID (after `since`)."""
        return Counter(json.loads(self._ask(f"received {since}")))

    def close(self) -> None:
        """SIGTERM, not the end of its stdin: a process forked from this one (the crash
        matrix forks its runs) may still hold that pipe open."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def running_sink(delay: float = 0.0) -> Iterator[Sink]:
    sink = Sink(delay)
    try:
        yield sink
    finally:
        sink.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The SMTP sink (testkit.smtp.Sink).")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds before each 250 (messages in flight meanwhile)")
    serve_sink(parser.parse_args().delay)
