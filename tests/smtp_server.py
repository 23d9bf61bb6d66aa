"""A real SMTP server for the delivery tests: aiosmtpd, scripted like the in-memory twin.

The server follows a `worker.mail.transports.memory.Script` (the same object the twin follows):
its greeting (421, or silence), its replies to MAIL, RCPT and DATA, and a connection
dropped after the data. STARTTLS, implicit TLS and AUTH use a certificate issued by a
throwaway CA (trustme) for `localhost` and 127.0.0.1; clients trust that CA alone.

aiosmtpd's `Controller(port=0)` breaks its own start-up check, so a free port is picked
first. The server runs in its own thread and event loop; it is stopped on exit.

`queue_notice` puts one notification in the outbox as a pass would (the payload of
`worker.mail.samples`), for the outbox and delivery tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import Engine, insert

from worker.db.schema import metadata
from worker.mail.samples import sample_row
from worker.mail.transports.memory import Script, text_of

HOST = "127.0.0.1"
USER, PASSWORD = "mailer", "s3cret p@ss"
NOTIFICATIONS = metadata.tables["notifications"]


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Handler:
    """aiosmtpd hooks answering as the script says; keeps what it accepted."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.received: list[Received] = []
        self.lock = threading.Lock()
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
        content = envelope.original_content or b""
        with self.lock:
            self.received.append(Received(str(envelope.mail_from),
                                          tuple(envelope.rcpt_tos), content))
        return "250 2.0.0 Queued"


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


def queue_notice(
    engine: Engine, *, recipients: tuple[str, ...] = ("paul@dupont.example",),
    kind: str = "renewal_upcoming", audience: str = "customer", ref: str = "s1",
    timezone: str = "Europe/Paris", occasion_date: date = date(2027, 3, 10),
    locale: str = "fr", **columns: Any,
) -> int:
    """Insert one queued notification shaped as `worker.passes.effects` stores it (the payload
    of `worker.mail.samples`); return its id."""
    sample = sample_row(kind, audience, locale)
    sample["payload"]["recipient_names"] = [f"Contact {i}" for i in range(len(recipients))]
    row = {**{k: v for k, v in sample.items() if k != "id"},
           "ref": ref, "occasion": f"{ref}:{occasion_date.isoformat()}",
           "occasion_date": occasion_date, "reseller_id": "r-nuage",
           "recipients": list(recipients), "timezone": timezone, "attempts": 0,
           "created_at": datetime(2027, 3, 10, 8, 0, tzinfo=UTC), **columns}
    with engine.begin() as connection:
        return int(connection.execute(
            insert(NOTIFICATIONS).values(row).returning(NOTIFICATIONS.c.id)).scalar_one())
