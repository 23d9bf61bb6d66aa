"""Bounces and suppression: a report in the form Postfix, Exim, Microsoft 365 or Gmail
sends marks the recipient `bounced`, writes `notification.bounced` and suppresses the
address; a suppressed address gets nothing more while the others still do; an import that
changes the contact, or `suppressions remove`, lifts it."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from testkit.cli import command, run_cli
from testkit.outbox import queue_notice
from testkit.smtp import smtp_server
from tests.bounce_reports import FORMS, Bounced, mangled, postfix, vacation
from tests.portfolio import as_json, portfolio
from worker.config.policy import Policy, build_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine
from worker.db.schema import EVENTS, NOTIFICATIONS, SUPPRESSIONS
from worker.importing.load import import_data
from worker.mail.bounces.parse import read_report
from worker.mail.bounces.record import Matched, record_report
from worker.mail.drain import deliver_due
from worker.mail.render import render_notification
from worker.mail.samples import sample_row
from worker.mail.suppressions import lift, suppress, suppressed_among, suppressions
from worker.mail.transports.choice import open_mailer
from worker.mail.transports.memory import MemoryMailer
from worker.passes.run import run_pass
from worker.reports.history import history

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
LATER = T + timedelta(hours=1)
A, B = "paul@dupont.example", "marie@dupont.example"
DOMAIN = "bounces.relay.example"
WITH_TOKENS = build_policy({"mail": {"bounce_domain": DOMAIN}})
PLAIN = build_policy({})


def send(engine: Engine, policy: Policy, recipients: tuple[str, ...] = (A, B),
         ref: str = "s1", moment: datetime = T) -> tuple[int, MemoryMailer]:
    notification_id = queue_notice(engine, recipients=recipients, ref=ref)
    mailer = MemoryMailer()
    deliver_due(engine, policy, Settings(), moment, clock=lambda: moment, mailer=mailer)
    return notification_id, mailer


def bounced_to(mailer: MemoryMailer, recipient: str, **options: Any) -> Bounced:
    sent = next(d for d in mailer.delivered if recipient in d.recipients)
    return Bounced(sent.data, sent.sender, recipient, **options)


def read(engine: Engine, report: bytes, policy: Policy = WITH_TOKENS) -> list[Matched]:
    with engine.begin() as connection:
        return record_report(connection, read_report(report, policy.mail.bounce_domain),
                             source="test", now=LATER)


def notice(engine: Engine, notification_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.id == notification_id)).one()


def events_of(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [row.data for row in connection.execute(
            select(EVENTS).where(EVENTS.c.type == kind).order_by(EVENTS.c.seq))]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_permanent_failure_marks_the_recipient_bounced_and_suppresses_it(
    sqlite: Engine, form: str
) -> None:
    """Each recipient had its own envelope sender; the report names notice and recipient."""
    notification_id, mailer = send(sqlite, WITH_TOKENS)
    senders = {d.recipients: d.sender for d in mailer.delivered}
    assert len(set(senders.values())) == 2
    assert all(s.startswith("bounces+") and s.endswith(f"@{DOMAIN}") for s in senders.values())
    (matched,) = read(sqlite, FORMS[form](bounced_to(mailer, A)))
    row = notice(sqlite, notification_id)
    assert (matched.outcome, matched.recipient, matched.status) == ("bounced", A, "5.1.1")
    assert row.status == "sent"
    assert (row.recipient_results[A]["status"], row.recipient_results[B]["status"]) == (
        "bounced", "sent")
    (event,) = events_of(sqlite, "notification.bounced")
    assert {k: event[k] for k in ("notification_id", "kind", "ref", "recipient", "status")} == {
        "notification_id": notification_id, "kind": "renewal_upcoming", "ref": "s1",
        "recipient": A, "status": "5.1.1"}
    assert "5.1.1" in event["diagnostic"]
    with sqlite.connect() as connection:
        assert list(suppressed_among(connection, [A, B])) == [A]


def test_without_envelope_tokens_the_quoted_message_id_matches_the_report(
    sqlite: Engine
) -> None:
    notification_id, mailer = send(sqlite, PLAIN)
    assert {d.sender for d in mailer.delivered} == {"ops@nuage.example"}
    (matched,) = read(sqlite, postfix(bounced_to(mailer, B)), PLAIN)
    assert (matched.outcome, matched.notification_id, matched.recipient) == (
        "bounced", notification_id, B)


def test_a_mangled_report_is_matched_by_its_envelope_sender(sqlite: Engine) -> None:
    notification_id, mailer = send(sqlite, WITH_TOKENS)
    (matched,) = read(sqlite, mangled(bounced_to(mailer, B)))
    assert (matched.outcome, matched.notification_id, matched.recipient) == (
        "bounced", notification_id, B)


def test_a_temporary_failure_is_only_noted_and_a_report_read_twice_changes_nothing(
    sqlite: Engine
) -> None:
    notification_id, mailer = send(sqlite, WITH_TOKENS)
    delayed = postfix(bounced_to(mailer, A, status="4.2.2",
                                 reply="452 4.2.2 <{rcpt}>: Mailbox full"), delayed=True)
    assert [m.outcome for m in read(sqlite, delayed)] == ["noted"]
    assert notice(sqlite, notification_id).recipient_results[A]["status"] == "sent"
    report = FORMS["gmail"](bounced_to(mailer, A))
    assert [m.outcome for m in read(sqlite, report)] == ["bounced"]
    before = notice(sqlite, notification_id).recipient_results
    assert [m.outcome for m in read(sqlite, report)] == ["already"]
    assert [m.outcome for m in read(sqlite, FORMS["exim"](bounced_to(mailer, A)))] == [
        "already"]
    assert notice(sqlite, notification_id).recipient_results == before
    assert len(events_of(sqlite, "notification.bounced")) == 1
    with sqlite.connect() as connection:
        assert [row.address for row in suppressions(connection)] == [A]


def test_a_suppressed_address_gets_nothing_more_and_the_others_still_do(
    sqlite: Engine
) -> None:
    """The next notice goes to B only (A: `suppressed`); one to A alone is `cancelled`."""
    _, mailer = send(sqlite, WITH_TOKENS)
    read(sqlite, postfix(bounced_to(mailer, A)))
    both, later = send(sqlite, WITH_TOKENS, ref="s2", moment=LATER)
    alone, nothing = send(sqlite, WITH_TOKENS, recipients=(A,), ref="s3", moment=LATER)
    assert [d.recipients for d in later.delivered] == [(B,)]
    assert nothing.delivered == []
    row = notice(sqlite, both)
    assert (row.status, row.recipient_results[A]["status"]) == ("sent", "suppressed")
    assert notice(sqlite, alone).status == "cancelled"
    assert [e["notification_id"] for e in events_of(sqlite, "notification.cancelled")] == [alone]
    with sqlite.connect() as connection:
        assert lift(connection, [A.upper()], by="test", now=LATER) == [A]
        connection.commit()
    _, again = send(sqlite, WITH_TOKENS, recipients=(A,), ref="s4", moment=LATER)
    assert [d.recipients for d in again.delivered] == [(A,)]


def test_history_shows_the_bounce_and_its_event(sqlite: Engine) -> None:
    import_data(sqlite, as_json(portfolio()), PLAIN, started_at=T)
    _, mailer = send(sqlite, WITH_TOKENS)
    read(sqlite, FORMS["microsoft"](bounced_to(mailer, A)))
    with sqlite.connect() as connection:
        story = history(connection, "s1")
    (entry,) = [e for e in story["timeline"] if e["entry"] == "notice"]
    assert {r["address"]: r["status"] for r in entry["recipients"]} == {A: "bounced",
                                                                       B: "sent"}
    assert "notification.bounced" in [e["type"] for e in story["timeline"]
                                      if e["entry"] == "event"]


def test_an_import_that_changes_the_contact_lifts_its_suppression(sqlite: Engine) -> None:
    """Re-importing the same address keeps it suppressed; a new address lifts it."""
    import_data(sqlite, as_json(portfolio()), PLAIN, started_at=T)
    with sqlite.begin() as connection:
        suppress(connection, A, reason="550 5.1.1 User unknown", source="test",
                 status="5.1.1", notification_id=None, now=T)
    import_data(sqlite, as_json(portfolio()), PLAIN, started_at=LATER)
    with sqlite.connect() as connection:
        assert list(suppressed_among(connection, [A])) == [A]
    changed = portfolio()
    changed["customers"][0]["admins"] = [{"name": "Paul Dupont",
                                          "email": "p.dupont@dupont.example"}]
    import_data(sqlite, as_json(changed), PLAIN, started_at=LATER)
    with sqlite.connect() as connection:
        assert suppressed_among(connection, [A]) == {}
        assert connection.execute(select(SUPPRESSIONS.c.lifted_by)).scalar_one() == "import"


def test_the_pass_lists_the_resellers_suppressed_contacts_in_its_digest(sqlite: Engine) -> None:
    import_data(sqlite, as_json(portfolio()), PLAIN, started_at=T)
    with sqlite.begin() as connection:
        suppress(connection, A, reason="550 5.1.1 User unknown", source="test",
                 status="5.1.1", notification_id=None, now=T)
    run_pass(sqlite, PLAIN, T, clock=lambda: T)
    with sqlite.connect() as connection:
        payload = connection.execute(select(NOTIFICATIONS.c.payload).where(
            NOTIFICATIONS.c.kind == "reseller_digest", NOTIFICATIONS.c.ref == "r1")).scalar_one()
    assert payload["facts"]["suppressed"] == [{
        "who": "Paul Dupont (Boulangerie Dupont)", "customer_id": "c1", "address": A,
        "reason": "550 5.1.1 User unknown", "status": "5.1.1", "since": "2027-03-10"}]


@pytest.mark.parametrize(("locale", "title"), [
    ("en", "1 contact whose address bounces"), ("fr", "1 contact dont l’adresse est rejetée")])
def test_the_digest_lists_suppressed_contacts_with_why_and_since_when(
    locale: str, title: str
) -> None:
    row = sample_row("reseller_digest", "reseller", locale)
    row["payload"]["facts"]["suppressed"] = [{
        "who": "Paul Dupont (Boulangerie Dupont)", "customer_id": "c1", "address": A,
        "reason": "550 5.1.1 User unknown", "status": "5.1.1", "since": "2027-03-10"}]
    rendered = render_notification(row)
    for text in (rendered.text, rendered.html):
        assert title in text
        assert "550 5.1.1 User unknown" in text
        assert "2027" in text
        assert "Paul Dupont" in text


def test_bounces_from_another_replica_files_stdin_and_a_maildir(
    database_url: str, tmp_path: Path
) -> None:
    """One process sent the notice; `bounces` run elsewhere on the same database records
    it (each form of input), names a file that is no bounce and exits 3; then `status`
    counts the suppression, `suppressions` lists it and `suppressions remove` lifts it."""
    config = tmp_path / "worker.toml"
    config.write_text(f'[mail]\nbounce_domain = "{DOMAIN}"\n')
    engine = make_engine(database_url)
    queue_notice(engine, recipients=(A, B))
    with smtp_server() as server:
        deliver_due(engine, WITH_TOKENS, Settings(), T, clock=lambda: T,
                    mailer=open_mailer(Settings(smtp_url=server.url())))
        received = {r.recipients[0]: r for r in server.received}
    engine.dispose()
    reports = {r: FORMS["postfix"](Bounced(received[r].data, received[r].sender, r))
               for r in (A, B)}
    (tmp_path / "a.eml").write_bytes(reports[A])
    (tmp_path / "ooo.eml").write_bytes(vacation(Bounced(received[A].data,
                                                        received[A].sender, A)))
    maildir = tmp_path / "Maildir"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    (maildir / "new" / "1741600805.M1P2.mx").write_bytes(reports[B])

    def worker(*args: str, **env: str) -> Any:
        return run_cli(*args, database_url=database_url, cwd=tmp_path,
                       WORKER_CONFIG=str(config), **env)

    files = worker("bounces", "a.eml", "ooo.eml")
    assert files.code == 3
    assert f"a.eml: bounced: {A}" in files.stdout
    assert "ooo.eml: skipped: no failed recipient found" in files.stderr
    assert worker("bounces", "--maildir", str(maildir)).code == 0
    assert [p.name for p in (maildir / "cur").iterdir()] == ["1741600805.M1P2.mx:2,S"]
    code, out = bounces_from_stdin(reports[A], database_url, tmp_path, config)
    assert (code, f"<stdin>: already: {A}" in out) == (0, True)
    listed = worker("suppressions", "--format", "json").json()
    assert [row["address"] for row in listed] == [A, B]
    assert worker("status", "--format", "json").json()["mail"]["suppressed"] == 2
    assert worker("suppressions", "remove", B).code == 0
    assert [r["address"] for r in worker("suppressions", "--format", "json").json()] == [A]


def bounces_from_stdin(data: bytes, database_url: str, cwd: Path, config: Path) -> Any:
    """`bounces -` with `data` on standard input."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SMTP_URL", "HEALTH_PORT")}
    environ.update(DATABASE_URL=database_url, WORKER_CONFIG=str(config))
    done = subprocess.run([*command(), "bounces", "-"], input=data, capture_output=True,
                          env=environ, cwd=cwd, timeout=120, check=False)
    return done.returncode, done.stdout.decode()
