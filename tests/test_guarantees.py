"""The operational promises of the README, one test each, against real servers.

- a retry sends the very same bytes (only the Date header is stamped again);
- SMTP credentials are never sent in clear, except to a loopback host;
- connections are reused, 4 at most by default;
- the `[delivery]` section of a policy file sets the retry schedule;
- reseller mail waits for the reseller's own send window, not the customer's;
- an import failing part-way through its write leaves nothing written;
- a dry run writes no `.eml` file and sends nothing;
- anything unexpected (here, a database that cannot be reached) exits with status 1.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, event, func, select

from testkit.cli import run_cli
from testkit.net import free_port
from testkit.outbox import NOTIFICATIONS, queue_notice
from testkit.smtp import PASSWORD, USER, TestServer, smtp_server
from tests.portfolio import as_json, portfolio
from worker.config.policy import Policy, build_policy, load_policy
from worker.config.settings import Settings
from worker.db.schema import metadata
from worker.importing.load import import_data
from worker.mail.drain import deliver_due
from worker.mail.transports.choice import open_mailer
from worker.mail.transports.memory import MemoryMailer, Script
from worker.mail.transports.smtp import SmtpConfig, SmtpMailer
from worker.passes.run import run_pass
from worker.rules.notices import IGNORES_SEND_WINDOW

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Paris, inside the send window
POLICY = build_policy({})
A, B = "paul@dupont.example", "marie@dupont.example"


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """A socket left open fails the test that left it, not whichever test runs next."""
    yield
    gc.collect()


def deliver(engine: Engine, mailer: Any, moment: datetime = T,
            policy: Policy = POLICY) -> Any:
    return deliver_due(engine, policy, Settings(), moment, clock=lambda: moment,
                       mailer=mailer)


def stored(engine: Engine, notification_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.id == notification_id)).one()


def without_date(data: bytes) -> bytes:
    """The message as received, its Date header removed (CRLF lines, as on the wire)."""
    head, body = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)
    kept = [line for line in head.split(b"\n") if not line.lower().startswith(b"date:")]
    return b"\n".join(kept) + b"\n\n" + body


# --- delivery -------------------------------------------------------------------------


def test_a_retry_sends_the_very_same_bytes_to_a_real_server(engine: Engine) -> None:
    """452 for one recipient: the retry five minutes later carries byte for byte the
    message the other recipient got, but for its new Date."""
    queue_notice(engine, recipients=(A, B))
    with smtp_server(script=Script(rcpt={B: 452})) as server:
        assert deliver(engine, open_mailer(Settings(smtp_url=server.url()))).as_dict() == {
            "retrying": 1}
        server.handler.script = Script()
        later = T + timedelta(minutes=5)
        assert deliver(engine, open_mailer(Settings(smtp_url=server.url())),
                       later).as_dict() == {"sent": 1}
        first, second = server.received
    assert (first.recipients, second.recipients) == ((A,), (B,))
    assert b"Date: Wed, 10 Mar 2027 10:00:00 +0000" in first.data
    assert b"Date: Wed, 10 Mar 2027 10:05:00 +0000" in second.data
    assert without_date(first.data) == without_date(second.data)


def _clear_text_relay(host: str, server: TestServer) -> SmtpMailer:
    config = SmtpConfig.from_url(f"smtp://{USER}:{PASSWORD.replace(' ', '%20')}"
                                 f"@{host}:{server.port}")
    return SmtpMailer(SmtpConfig(host=config.host, port=config.port, mode=config.mode,
                                 username=config.username, password=config.password,
                                 connect_timeout=2.0, local_hostname="worker.test"))


def test_credentials_are_never_sent_in_clear_to_a_host_that_is_not_loopback(
    engine: Engine
) -> None:
    """A relay offering AUTH without TLS: the worker does not log in, sends nothing, and
    says why. `127.1` reaches the test server on 127.0.0.1, but is not a loopback address
    as the worker reads host names (only `localhost` and loopback IP literals are): to
    the worker it is a remote host, as a real relay would be."""
    notification_id = queue_notice(engine)
    with smtp_server(auth=True, auth_in_clear=True) as relay:
        counts = deliver(engine, _clear_text_relay("127.1", relay))
        assert (relay.handler.logins, relay.received) == ([], [])
    assert counts.as_dict() == {"retrying": 1}
    assert "not sent in clear" in stored(engine, notification_id).last_error


def test_credentials_go_in_clear_to_a_loopback_relay(engine: Engine) -> None:
    """The exception the README names: a relay on this machine (127.0.0.1) may take the
    password without TLS; the control for the test above."""
    notification_id = queue_notice(engine)
    with smtp_server(auth=True, auth_in_clear=True) as relay:
        counts = deliver(engine, _clear_text_relay("127.0.0.1", relay))
        assert relay.handler.logins == [(USER, False)]
        assert len(relay.received) == 1
    assert counts.as_dict() == {"sent": 1}
    assert stored(engine, notification_id).status == "sent"


def test_the_default_pool_reuses_four_connections(engine: Engine) -> None:
    """SMTP_URL alone (the defaults): 40 notices go over exactly 4 connections."""
    for i in range(40):
        queue_notice(engine, ref=f"s{i}", recipients=(f"c{i}@dupont.example",))
    with smtp_server() as server:
        counts = deliver(engine, open_mailer(Settings(smtp_url=server.url())))
        assert server.connections == 4
        assert len(server.received) == 40
    assert counts.as_dict() == {"sent": 40}


def test_the_delivery_section_of_a_policy_file_sets_the_retry_schedule(
    engine: Engine, tmp_path: Path
) -> None:
    """[delivery] retry_delays_minutes = [1, 2]: retried after 1 minute, then 2 (not
    before), then dead."""
    override = tmp_path / "policy.toml"
    override.write_text("[delivery]\nretry_delays_minutes = [1, 2]\n", encoding="utf-8")
    policy = load_policy(override)
    notification_id = queue_notice(engine)
    mailer = MemoryMailer(Script(rcpt={A: 451}))
    seen = []
    for minutes in (0, 1, 2, 3):
        counts = deliver(engine, mailer, T + timedelta(minutes=minutes), policy)
        row = stored(engine, notification_id)
        seen.append((counts.as_dict(), row.status, row.not_before))
    assert seen == [
        ({"retrying": 1}, "retrying", T + timedelta(minutes=1)),
        ({"retrying": 1}, "retrying", T + timedelta(minutes=3)),
        ({}, "retrying", T + timedelta(minutes=3)),
        ({"dead": 1}, "dead", None),
    ]


def test_reseller_mail_waits_for_the_resellers_own_send_window(
    engine: Engine, policy: Policy
) -> None:
    """s3's customer is in Auckland (15:00: open), its reseller in Toronto (21:00: closed):
    the customer's notice goes now, the reseller's waits for 08:00 in Toronto."""
    import_data(engine, as_json(portfolio()), policy, started_at=datetime.now(UTC))
    moment = datetime(2027, 1, 30, 2, 0, tzinfo=UTC)
    run_pass(engine, policy, moment)
    mailer = MemoryMailer()
    deliver(engine, mailer, moment, policy)
    with engine.connect() as connection:
        rows = connection.execute(select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.ref == "s3", NOTIFICATIONS.c.kind == "renewal_window_open")).all()
    by_audience = {row.audience: row for row in rows}
    toronto_eight = datetime(2027, 1, 30, 8, 0, tzinfo=ZoneInfo("America/Toronto"))
    assert by_audience["customer"].status == "sent"
    assert (by_audience["reseller"].status, by_audience["reseller"].not_before) == (
        "queued", toronto_eight)
    assert by_audience["reseller"].timezone == "America/Toronto"
    to_toronto = {message_from_bytes(d.data)["X-Notification-Kind"]
                  for d in mailer.delivered if "desk@maple.example" in d.recipients}
    assert to_toronto <= IGNORES_SEND_WINDOW  # only code mail reached Toronto at night


# --- import ---------------------------------------------------------------------------


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as connection:
        return {name: sorted(map(tuple, connection.execute(select(table))), key=repr)
                for name, table in metadata.tables.items() if name != "alembic_version"}


def test_an_import_failing_part_way_through_its_write_leaves_nothing(
    engine: Engine, policy: Policy
) -> None:
    """The database fails when the subscriptions are inserted, after the resellers and
    customers were written (new rows and updated ones): the whole import is undone."""
    import_data(engine, as_json(portfolio()), policy, started_at=datetime.now(UTC))
    before = _rows(engine)
    data = portfolio()
    data["customers"][0]["name"] = "Boulangerie Dupont & Fils"
    data["customers"].append({**data["customers"][0], "id": "c4", "name": "Nouvelle"})
    data["subscriptions"].append({**data["subscriptions"][0], "id": "s4",
                                  "customer_id": "c4"})
    written: list[str] = []

    def fail_on_subscriptions(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        if words[0] in ("INSERT", "UPDATE"):
            written.append(f"{words[0]} {words[2 if words[0] == 'INSERT' else 1]}")
        if statement.startswith("INSERT INTO subscriptions"):
            raise RuntimeError("the disk is full")

    event.listen(engine, "before_cursor_execute", fail_on_subscriptions)
    try:
        with pytest.raises(RuntimeError, match="disk is full"):
            import_data(engine, as_json(data), policy, started_at=datetime.now(UTC))
    finally:
        event.remove(engine, "before_cursor_execute", fail_on_subscriptions)
    assert {"INSERT customers", "UPDATE customers"} <= set(written)
    assert before == _rows(engine)
    with engine.connect() as connection:
        assert 3 == connection.scalar(select(func.count()).select_from(
            metadata.tables["customers"]))


# --- the command ----------------------------------------------------------------------


@pytest.mark.e2e
def test_a_dry_run_writes_no_eml_and_sends_nothing(database_url: str, tmp_path: Path) -> None:
    """With the file transport and with SMTP: nothing written, no connection opened;
    the same pass for real then does both (so there was something to send)."""
    data = tmp_path / "portfolio.json"
    data.write_text(as_json(portfolio()), encoding="utf-8")
    assert run_cli("import", str(data), database_url=database_url, cwd=tmp_path).code == 0
    moment = "2027-02-05T10:00:00Z"
    with smtp_server() as server:
        dry_smtp = run_cli("run", "--once", "--as-of", moment, "--dry-run", "--json",
                           database_url=database_url, cwd=tmp_path, SMTP_URL=server.url())
        dry_files = run_cli("run", "--once", "--as-of", moment, "--dry-run",
                            database_url=database_url, cwd=tmp_path)
        assert (server.connections, server.received) == (0, [])
    assert 0 == dry_smtp.code == dry_files.code, dry_smtp.stderr + dry_files.stderr
    assert dry_smtp.json()["delivery"]["would_send"] > 0
    assert list(tmp_path.rglob("*.eml")) == []
    real = run_cli("run", "--once", "--as-of", moment, database_url=database_url,
                   cwd=tmp_path)
    assert real.code == 0, real.stderr
    assert list((tmp_path / "mail").rglob("*.eml"))


@pytest.mark.e2e
def test_anything_unexpected_exits_with_status_one(tmp_path: Path) -> None:
    """A database that refuses connections is neither bad input (2) nor a partial pass (3):
    status 1, one `command_failed` JSON log line and one line for people."""
    url = f"postgresql://worker@127.0.0.1:{free_port()}/worker"
    result = run_cli("status", database_url=url, cwd=tmp_path)
    assert result.code == 1
    lines = result.stderr.splitlines()
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert events == ["command_failed"]
    assert next(line for line in lines if line.startswith("error: ")).startswith(
        "error: OperationalError")
