"""The SMTP mailer: aiosmtplib over a small pool of reused connections.

SMTP_URL modes (README, "Configuration"): `smtp://` sends in plain text or upgrades with STARTTLS
when the server offers it; `smtp+starttls://` requires STARTTLS (a server that does not
offer it is not written to); `smtps://` speaks TLS from the first byte. Certificates are
always verified (the system's trust store, or `tls_context`). Credentials come from the
URL or SMTP_USERNAME / SMTP_PASSWORD, and are sent only over TLS, or to a loopback host.

Every aiosmtplib error is classified here, once (see `worker.mail.transports.base`): trouble
setting up a connection (no answer, refused, 421 or any other greeting than 220, TLS,
EHLO, AUTH) is transient whatever its code, since it says nothing about the message;
replies to MAIL, RCPT and DATA are classified by code. When a connection cannot be set
up, the mailer stops trying for the rest of the drain (`close` resets it): every message
still to send gets the same transient outcome at once instead of waiting for its own
timeout.

A reused connection found closed by the server (an idle timeout) is replaced once,
before anything of the message was sent. A DATA reply that never comes is transient;
the server may have kept the message, which then arrives twice with one Message-ID:
RFC 5321 §4.5.3.2.6 gives the server 10 minutes, the default `data_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from worker.config.checks import is_loopback
from worker.mail.transports.base import (
    DeliveryFailure,
    Outcome,
    Outgoing,
    PermanentFailure,
    Reply,
    Stage,
    TransientFailure,
    Verdict,
    classify,
    failure_for,
)

Mode = Literal["plain", "starttls", "tls"]
_MODES: dict[str, tuple[Mode, int]] = {
    "smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465),
}
_LOST = (aiosmtplib.SMTPServerDisconnected, ConnectionError)


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to connect; built once from SMTP_URL at the edge."""

    host: str
    port: int
    mode: Mode = "plain"
    username: str | None = None
    password: str | None = None
    pool_size: int = 4
    connect_timeout: float = 30.0  # TCP, TLS, greeting, EHLO, STARTTLS, AUTH
    command_timeout: float = 60.0  # MAIL, RCPT, RSET
    data_timeout: float = 600.0  # the reply to the end of the data
    tls_context: ssl.SSLContext | None = None  # None: the system's trust store
    local_hostname: str | None = None  # EHLO name; None: this host's FQDN

    @classmethod
    def from_url(
        cls, url: str, username: str | None = None, password: str | None = None
    ) -> SmtpConfig:
        """`smtp://`, `smtp+starttls://` or `smtps://`; URL credentials win over the
        separate ones (percent-decoded). Other fields: `dataclasses.replace`."""
        parts = urlsplit(url)
        if parts.scheme not in _MODES or not parts.hostname:
            raise ValueError(f"not an SMTP URL: {parts.scheme}://{parts.hostname or ''}")
        mode, default_port = _MODES[parts.scheme]
        user = unquote(parts.username) if parts.username else username
        secret = unquote(parts.password) if parts.password is not None else password
        return cls(host=parts.hostname, port=parts.port or default_port, mode=mode,
                   username=user or None, password=secret)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _Stale(Exception):
    """A reused connection turned out to be closed before the message began."""


class _Crowded(Exception):
    """The server refused one more connection while others are open: use those."""


class _Turns:
    """At most `limit` sends at once; the limit shrinks to the connections the server
    accepts. Bound to the running event loop: made again after `close`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.condition = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self.condition:
            await self.condition.wait_for(lambda: self.busy < self.limit)
            self.busy += 1
        try:
            yield
        finally:
            async with self.condition:
                self.busy -= 1
                self.condition.notify()


class SmtpMailer:
    """Sends over at most `pool_size` connections at once, each reused message after
    message. A server that takes fewer connections (421 to one more) gets fewer."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: list[aiosmtplib.SMTP] = []
        self._opened: list[asyncio.BaseTransport] = []
        self._live = 0  # connections open (idle or sending) or being opened
        self._turns: _Turns | None = None
        self._down: DeliveryFailure | None = None
        self._local_hostname = config.local_hostname

    @property
    def description(self) -> str:
        scheme = {"plain": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}
        return f"{scheme[self.config.mode]}://{self.config.address}"

    @property
    def concurrency(self) -> int:
        return self.config.pool_size

    async def send(self, message: Outgoing) -> Outcome:
        if self._turns is None:
            self._turns = _Turns(self.config.pool_size)
        while True:
            async with self._turns.turn():
                if self._down is not None:
                    return self._down.outcome(message.recipients)
                try:
                    return await self._send_on_pool(message)
                except _Crowded:
                    continue  # wait for a connection another send is using
                except DeliveryFailure as failure:
                    return failure.outcome(message.recipients)

    async def close(self) -> None:
        """Say QUIT on every idle connection; the next `send` starts afresh."""
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await connection.quit(timeout=self.config.command_timeout)
            connection.close()
        # A TLS transport closes in the background (close_notify); once the session has
        # ended there is nothing left to say: drop the sockets now, before the event loop
        # that owns them is gone.
        opened, self._opened = self._opened, []
        for transport in opened:
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()
        await asyncio.sleep(0)
        self._live, self._turns, self._down = 0, None, None

    async def _send_on_pool(self, message: Outgoing) -> Outcome:
        if self._idle:
            connection = self._idle.pop()
            try:
                return await self._send_on(connection, message, reused=True)
            except _Stale:
                pass
        connection = await self._open()
        return await self._send_on(connection, message, reused=False)

    async def _send_on(
        self, connection: aiosmtplib.SMTP, message: Outgoing, *, reused: bool
    ) -> Outcome:
        try:
            return await _Transaction(connection, message, self.config, reused).run()
        finally:
            if connection.is_connected:
                self._idle.append(connection)
            else:
                connection.close()
                self._live -= 1

    async def _open(self) -> aiosmtplib.SMTP:
        """A connected, secured and authenticated connection. When none can be opened
        and none is open, a TransientFailure that stops the mailer for the rest of the
        drain; when others are open, `_Crowded`: the pool shrinks to them."""
        self._live += 1
        try:
            return await self._connect()
        except DeliveryFailure as failure:
            self._live -= 1
            if self._live > 0 and self._turns is not None:
                self._turns.limit = self._live
                raise _Crowded from failure
            self._down = failure
            raise

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self.config
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        connection = aiosmtplib.SMTP(
            hostname=config.host, port=config.port, timeout=config.connect_timeout,
            use_tls=config.mode == "tls",
            start_tls=True if config.mode == "starttls" else None,
            validate_certs=True, tls_context=config.tls_context,
            local_hostname=self._local_hostname,
        )
        try:
            await connection.connect()
            await _greet(connection)
            await self._login(connection)
        except DeliveryFailure:
            connection.close()
            raise
        except Exception as error:
            connection.close()
            raise _setup_failure(error, config) from error
        if connection.transport is not None:
            self._opened.append(connection.transport)
        return connection

    async def _login(self, connection: aiosmtplib.SMTP) -> None:
        config = self.config
        if config.username is None:
            return
        secure = connection.get_transport_info("sslcontext") is not None
        if not secure and not is_loopback(config.host):
            raise TransientFailure(
                f"{config.address} offers no TLS: the SMTP password is not sent in clear "
                "text (use smtp+starttls:// or smtps://)")
        try:
            await connection.login(config.username, config.password or "")
        except aiosmtplib.SMTPAuthenticationError as error:
            raise TransientFailure(
                f"AUTH refused by {config.address}: {error.code} {error.message}",
                error.code) from error


class _Transaction:
    """MAIL, RCPT for each recipient, DATA: the replies of one attempt."""

    def __init__(self, connection: aiosmtplib.SMTP, message: Outgoing, config: SmtpConfig,
                 reused: bool) -> None:
        self.connection = connection
        self.message = message
        self.config = config
        self.reused = reused
        self.replies: dict[str, Reply] = {}

    async def run(self) -> Outcome:
        try:
            accepted = await self._envelope()
            if accepted:
                await self._data(accepted)
            else:
                await self._reset()
        except _LOST as error:
            self._unanswered(None, f"connection lost: {error}")
        except aiosmtplib.SMTPTimeoutError as error:
            self._unanswered(None, f"no reply in time: {error}")
        return Outcome(tuple(self.replies[a] for a in self.message.recipients))

    async def _envelope(self) -> list[str]:
        options, encoding = self._options()
        timeout = self.config.command_timeout
        try:
            await self.connection.mail(self.message.sender, options=options,
                                       encoding=encoding, timeout=timeout)
        except aiosmtplib.SMTPResponseException as error:
            if self.reused and error.code == 421:
                raise _Stale from error
            raise failure_for(error.code, error.message, Stage.MAIL) from error
        except _LOST as error:
            if self.reused:
                raise _Stale from error
            raise
        accepted = []
        for address in self.message.recipients:
            try:
                await self.connection.rcpt(address, encoding=encoding, timeout=timeout)
                accepted.append(address)
            except aiosmtplib.SMTPRecipientRefused as error:
                verdict = classify(error.code, Stage.RCPT)
                self.replies[address] = Reply(address, verdict, error.code, error.message)
        return accepted

    async def _data(self, accepted: list[str]) -> None:
        try:
            response = await self.connection.data(self.message.data,
                                                  timeout=self.config.data_timeout)
        except aiosmtplib.SMTPResponseException as error:
            self._unanswered(error.code, error.message, Stage.DATA)
            await self._reset()
            return
        except aiosmtplib.SMTPReadTimeoutError:
            self._unanswered(None, f"no reply to the end of the data within "
                             f"{self.config.data_timeout:g} s: the server may have kept "
                             "the message; it is sent again with the same Message-ID")
            return
        for address in accepted:
            self.replies[address] = Reply(address, Verdict.ACCEPTED, response.code,
                                          response.message)

    def _unanswered(self, code: int | None, text: str, stage: Stage = Stage.DATA) -> None:
        """Every recipient without a reply yet gets this one."""
        verdict = classify(code, stage)
        for address in self.message.recipients:
            self.replies.setdefault(address, Reply(address, verdict, code, text))

    async def _reset(self) -> None:
        if not self.connection.is_connected:
            return
        try:
            await self.connection.rset(timeout=self.config.command_timeout)
        except (aiosmtplib.SMTPException, OSError):
            self.connection.close()

    def _options(self) -> tuple[list[str], str]:
        connection, message = self.connection, self.message
        options = []
        if connection.supports_extension("size"):
            options.append(f"SIZE={len(message.data)}")
        if not message.data.isascii() and connection.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        addresses = (message.sender, *message.recipients)
        if all(address.isascii() for address in addresses):
            return options, "ascii"
        if not connection.supports_extension("smtputf8"):
            raise PermanentFailure(f"{self.config.address} does not accept non-ASCII "
                                   "addresses (no SMTPUTF8)")
        return [*options, "SMTPUTF8"], "utf-8"


async def _greet(connection: aiosmtplib.SMTP) -> None:
    if connection.is_ehlo_or_helo_needed:
        try:
            await connection.ehlo()
        except aiosmtplib.SMTPHeloError:
            await connection.helo()


def _setup_failure(error: Exception, config: SmtpConfig) -> TransientFailure:
    """Any failure before MAIL FROM: transient, whatever the code (module docstring)."""
    where = config.address
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        return TransientFailure(f"no answer from {where} within "
                                f"{config.connect_timeout:g} s")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return TransientFailure(f"{where} answered {error.code} {error.message}", error.code)
    if isinstance(error, aiosmtplib.SMTPException) and "STARTTLS" in str(error):
        return TransientFailure(f"{where} does not offer STARTTLS, which "
                                "smtp+starttls:// requires")
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return TransientFailure(f"TLS with {where} failed: {error}")
    return TransientFailure(f"cannot connect to {where}: {type(error).__name__}: {error}")
