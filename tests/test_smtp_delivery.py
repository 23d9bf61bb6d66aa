"""Delivery through a real SMTP server (aiosmtpd, started here) with scripted replies.

Every scenario ends in the right status with nothing lost and nothing sent twice: a
transient refusal is retried and then delivered exactly once per recipient; a permanent
one is recorded and never retried. Timeouts are short and set here: no test sleeps.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from sqlalchemy import Engine, select

from testkit.outbox import NOTIFICATIONS, queue_notice
from testkit.smtp import PASSWORD, USER, Certificates, TestServer, certificates, smtp_server
from worker.config.policy import build_policy
from worker.config.settings import Settings
from worker.mail.drain import DeliveryCounts, deliver_due
from worker.mail.transports.base import Outgoing, Verdict
from worker.mail.transports.choice import open_mailer
from worker.mail.transports.memory import MemoryMailer, Script
from worker.mail.transports.smtp import SmtpConfig, SmtpMailer

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
LATER = T + timedelta(minutes=6)  # past the first retry delay (5 minutes)
POLICY = build_policy({})
A, B = "paul@dupont.example", "marie@dupont.example"


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """A socket left open fails the test that left it, not whichever test runs next."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return certificates()


@pytest.fixture
def server(certs: Certificates) -> Iterator[TestServer]:
    """STARTTLS required, AUTH required (over TLS only), certificate from a test CA."""
    with smtp_server(certs=certs, starttls=True, auth=True) as running:
        yield running


def mailer_for(server: TestServer, certs: Certificates, scheme: str = "smtp+starttls",
               *, credentials: bool = True, **options: Any) -> SmtpMailer:
    config = SmtpConfig.from_url(server.url(scheme, credentials=credentials))
    settings = {"tls_context": certs.client, "local_hostname": "worker.test",
                "connect_timeout": 0.5, "command_timeout": 2.0, "data_timeout": 2.0,
                **options}
    return SmtpMailer(replace(config, **settings))


def deliver(engine: Engine, mailer: SmtpMailer, moment: datetime = T) -> DeliveryCounts:
    return deliver_due(engine, POLICY, Settings(), moment, clock=lambda: moment,
                       mailer=mailer)


def stored(engine: Engine, notification_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.id == notification_id)).one()


def copies(server: TestServer) -> Counter[str]:
    """How many times each recipient got a message."""
    return Counter(address for received in server.received for address in received.recipients)


SCENARIOS = [
    pytest.param(Script(greeting=421), (A,), "retrying", "sent", {A: 1}, id="421-on-connect"),
    pytest.param(Script(rcpt={A: 451}), (A,), "retrying", "sent", {A: 1}, id="451-on-rcpt"),
    pytest.param(Script(rcpt={A: 452}), (A,), "retrying", "sent", {A: 1}, id="452-on-rcpt"),
    pytest.param(Script(rcpt={A: 552}), (A,), "retrying", "sent", {A: 1},
                 id="552-on-rcpt-is-452"),
    pytest.param(Script(rcpt={B: 452}), (A, B), "retrying", "sent", {A: 1, B: 1},
                 id="452-for-one-of-two"),
    pytest.param(Script(rcpt={B: 550}), (A, B), "sent", "sent", {A: 1},
                 id="550-for-one-of-two"),
    pytest.param(Script(rcpt={A: 550, B: 550}), (A, B), "failed", "failed", {},
                 id="550-for-both"),
    pytest.param(Script(data=552), (A,), "failed", "failed", {}, id="552-after-data"),
    pytest.param(Script(data=554), (A,), "failed", "failed", {}, id="554-after-data"),
    pytest.param(Script(data=451), (A,), "retrying", "sent", {A: 1}, id="451-after-data"),
    pytest.param(Script(drop_in_data=True), (A,), "retrying", "sent", {A: 1},
                 id="dropped-during-data"),
    pytest.param(Script(silent=True), (A,), "retrying", "sent", {A: 1}, id="never-answers"),
    pytest.param(Script(mail=550), (A,), "failed", "failed", {}, id="550-sender-refused"),
]


@pytest.mark.parametrize(("script", "recipients", "first", "final", "delivered"), SCENARIOS)
def test_each_server_reply_ends_in_the_right_status_with_nothing_lost_or_doubled(
    engine: Engine, server: TestServer, certs: Certificates, script: Script,
    recipients: tuple[str, ...], first: str, final: str, delivered: dict[str, int],
) -> None:
    """Pass 1 meets the scripted reply; pass 2 (after the first delay) a willing server;
    pass 3 finds nothing left to do."""
    notification_id = queue_notice(engine, recipients=recipients)
    server.handler.script = script
    deliver(engine, mailer_for(server, certs))
    after_first = stored(engine, notification_id)
    server.handler.script = Script()
    deliver(engine, mailer_for(server, certs), LATER)
    third = deliver(engine, mailer_for(server, certs), LATER + timedelta(days=3))
    after = stored(engine, notification_id)
    assert after_first.status == first
    assert after.status == final
    assert dict(copies(server)) == delivered
    assert third.as_dict() == {}
    if first != "sent":
        assert after_first.last_error
        assert after_first.sent_at is None
    if final == "sent":
        assert after.sent_at is not None
        assert after.attempts == (2 if first == "retrying" else 1)


def test_one_refused_recipient_among_two_is_recorded_per_recipient(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    notification_id = queue_notice(engine, recipients=(A, B))
    server.handler.script = Script(rcpt={B: 550})
    counts = deliver(engine, mailer_for(server, certs))
    row = stored(engine, notification_id)
    assert counts.as_dict() == {"sent": 1, "refused_recipients": 1}
    assert row.recipient_results[A]["status"] == "sent"
    assert row.recipient_results[B] | {"at": None} == {
        "status": "failed", "code": 550, "reply": "5.1.1 No such user here", "at": None}
    assert [r.recipients for r in server.received] == [(A,)]


def test_the_message_crosses_starttls_and_auth_with_its_headers(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    """The server refuses anything before STARTTLS and AUTH: a delivery proves both."""
    notification_id = queue_notice(engine)
    real = T + timedelta(seconds=2)
    counts = deliver_due(engine, POLICY, Settings(), T, clock=lambda: real,
                         mailer=mailer_for(server, certs))
    row = stored(engine, notification_id)
    (received,) = server.received
    message = message_from_bytes(received.data)
    assert counts.transport == f"smtp+starttls://127.0.0.1:{server.port}"
    assert (row.status, row.sent_at) == ("sent", real)
    assert received.sender == "ops@nuage.example"
    assert message["Message-ID"] == row.message_id
    assert message["Date"] == "Wed, 10 Mar 2027 10:00:02 +0000"


def test_plain_smtp_upgrades_when_the_server_offers_starttls(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    """smtp:// is opportunistic: this server offers AUTH only after STARTTLS."""
    notification_id = queue_notice(engine)
    deliver(engine, mailer_for(server, certs, "smtp"))
    assert stored(engine, notification_id).status == "sent"


def test_required_starttls_is_never_skipped(engine: Engine, certs: Certificates) -> None:
    """smtp+starttls:// to a server without STARTTLS sends nothing, in clear or otherwise."""
    notification_id = queue_notice(engine)
    with smtp_server(certs=certs) as plain:
        counts = deliver(engine, mailer_for(plain, certs, credentials=False))
        assert plain.received == []
    assert counts.as_dict() == {"retrying": 1}
    assert "STARTTLS" in stored(engine, notification_id).last_error


def test_a_certificate_from_an_unknown_authority_is_refused(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    notification_id = queue_notice(engine)
    stranger = certificates().client  # trusts another CA only
    deliver(engine, mailer_for(server, certs, tls_context=stranger))
    row = stored(engine, notification_id)
    assert (row.status, server.received) == ("retrying", [])
    assert "TLS" in row.last_error


def test_implicit_tls_delivers(engine: Engine, certs: Certificates) -> None:
    notification_id = queue_notice(engine)
    with smtp_server(certs=certs, implicit_tls=True) as tls:
        deliver(engine, mailer_for(tls, certs, "smtps", credentials=False))
        assert len(tls.received) == 1
    assert stored(engine, notification_id).status == "sent"


def test_wrong_credentials_are_a_transient_failure_not_a_refusal_of_the_message(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    """535 says nothing about the message: it is retried, counted, and the error named."""
    notification_id = queue_notice(engine)
    mailer = mailer_for(server, certs, username=USER, password="wrong")
    counts = deliver(engine, mailer)
    row = stored(engine, notification_id)
    assert counts.as_dict() == {"retrying": 1}
    assert "AUTH refused" in row.last_error
    assert "535" in row.last_error


def test_messages_share_a_few_reused_connections(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    """40 notices over a pool of 3: at most 3 connections, each notice delivered once."""
    ids = [queue_notice(engine, ref=f"s{i}", recipients=(f"c{i}@dupont.example",))
           for i in range(40)]
    counts = deliver(engine, mailer_for(server, certs, pool_size=3))
    assert counts.as_dict() == {"sent": 40}
    assert server.connections <= 3
    assert sorted(copies(server).values()) == [1] * 40
    assert {stored(engine, i).status for i in ids} == {"sent"}


def test_a_server_taking_fewer_connections_than_the_pool_gets_fewer(
    engine: Engine, certs: Certificates
) -> None:
    """421 to a third connection is no failure of the message: the pool shrinks to two."""
    for i in range(30):
        queue_notice(engine, ref=f"s{i}", recipients=(f"c{i}@dupont.example",))
    with smtp_server(certs=certs, connection_limit=2) as limited:
        counts = deliver(engine, mailer_for(limited, certs, "smtp", credentials=False,
                                            pool_size=4))
        assert sorted(copies(limited).values()) == [1] * 30
        assert limited.connections > 2  # some were refused
    assert counts.as_dict() == {"sent": 30}


def test_a_server_that_is_down_is_tried_once_per_drain(
    engine: Engine, server: TestServer, certs: Certificates
) -> None:
    """After a failed connection the rest of the drain does not wait on its own timeout."""
    for i in range(10):
        queue_notice(engine, ref=f"s{i}")
    server.handler.script = Script(silent=True)
    counts = deliver(engine, mailer_for(server, certs, pool_size=1))
    assert counts.as_dict() == {"retrying": 10}
    assert server.connections == 1


def test_smtp_url_modes_and_credentials() -> None:
    """the README's SMTP_URL forms; credentials in the URL win, percent-decoded."""
    url = SmtpConfig.from_url("smtp+starttls://u%40x:p%3Aw@mail.example", "env", "pw")
    assert (url.mode, url.port, url.username, url.password) == ("starttls", 587, "u@x", "p:w")
    env = SmtpConfig.from_url("smtps://mail.example:2465", "env", "pw")
    assert (env.mode, env.port, env.username, env.password) == ("tls", 2465, "env", "pw")
    plain = SmtpConfig.from_url("smtp://localhost")
    assert (plain.mode, plain.port, plain.username) == ("plain", 25, None)
    mailer = open_mailer(Settings(smtp_url="smtp://localhost:2525"))
    assert mailer.description == "smtp://localhost:2525"
    with pytest.raises(ValueError, match="not an SMTP URL"):
        SmtpConfig.from_url("http://mail.example")


CONTRACT = [
    pytest.param(Script(), id="accepted"),
    pytest.param(Script(greeting=421), id="421-greeting"),
    pytest.param(Script(silent=True), id="silent"),
    pytest.param(Script(mail=451), id="451-mail"),
    pytest.param(Script(rcpt={A: 550}), id="550-one"),
    pytest.param(Script(rcpt={A: 452, B: 550}), id="452-and-550"),
    pytest.param(Script(data=554), id="554-data"),
    pytest.param(Script(rcpt={B: 550}, data=451), id="550-then-451-data"),
    pytest.param(Script(drop_in_data=True), id="dropped"),
]


@pytest.mark.parametrize("script", CONTRACT)
def test_the_twin_answers_as_the_real_server_does(
    server: TestServer, certs: Certificates, script: Script
) -> None:
    """One contract: the in-memory mailer and aiosmtplib against aiosmtpd give the same
    verdict and code per recipient for the same script."""
    data = (b"From: ops@nuage.example\r\nTo: paul@dupont.example\r\nMessage-ID: <m@x>\r\n"
            b"Date: Wed, 10 Mar 2027 10:00:00 +0000\r\n\r\nhello\r\n")
    message = Outgoing("k", "ops@nuage.example", (A, B), data, "<m@x>")
    server.handler.script = script

    async def both() -> tuple[Any, Any]:
        smtp = mailer_for(server, certs)
        try:
            real = await smtp.send(message)
        finally:
            await smtp.close()
        return real, await MemoryMailer(script).send(message)

    real, twin = asyncio.run(both())
    shape = [(r.address, r.verdict, r.code) for r in real.replies]
    assert shape == [(r.address, r.verdict, r.code) for r in twin.replies]
    delivered = len(server.received) == 1
    assert delivered == any(r.verdict is Verdict.ACCEPTED for r in real.replies)


def test_the_password_never_appears_in_the_description(server: TestServer) -> None:
    mailer = open_mailer(Settings(smtp_url=server.url("smtp+starttls", credentials=True)))
    assert PASSWORD not in mailer.description
    assert USER not in mailer.description
