"""The outbox: send window, retry schedule, settling replies, claims, the drain.

The decisions are pure functions, tested with tables and properties; the drain runs on
both databases against the in-memory twin (the real SMTP server is in
test_smtp_delivery.py).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from testkit.outbox import NOTIFICATIONS, queue_notice
from worker.config.policy import Policy, build_policy
from worker.config.settings import Settings
from worker.db.engine import make_engine
from worker.db.schema import MESSAGES
from worker.drain.schedule import RetrySchedule
from worker.mail.compose import stamp_date
from worker.mail.decisions import (
    Due,
    GiveUp,
    Retry,
    SendNow,
    Skip,
    WaitUntil,
    retry_decision,
    settle,
    window_decision,
)
from worker.mail.drain import deliver_due, drain, plan_due
from worker.mail.store import (
    build_messages,
    claim,
    extend_lease,
    forget_messages,
    release,
    write_settlements,
)
from worker.mail.transports.base import Outcome, Outgoing, Reply, Verdict
from worker.mail.transports.files import FileMailer
from worker.mail.transports.memory import MemoryMailer, Script

T = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # 11:00 in Paris
POLICY = build_policy({})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def notice(kind: str = "renewal_upcoming", timezone: str = "Europe/Paris",
           occasion: date = date(2027, 3, 10), **fields: Any) -> Due:
    return Due(id=1, kind=kind, audience="customer", occasion_date=occasion,
               timezone=timezone, recipients=fields.pop("recipients", ("a@x.example",)),
               **fields)


def row(engine: Engine, notification_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(NOTIFICATIONS).where(
            NOTIFICATIONS.c.id == notification_id)).one()


def message_of(engine: Engine, notification_id: int) -> bytes | None:
    """The message kept for a notice, if any."""
    with engine.connect() as connection:
        return connection.execute(select(MESSAGES.c.message_bytes).where(
            MESSAGES.c.notification_id == notification_id)).scalar()


def clock_at(moment: datetime) -> Any:
    return lambda: moment


# --- the send window ------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "kind", "timezone", "expected"), [
    ("2027-03-10T06:59:00Z", "renewal_upcoming", "Europe/Paris",
     WaitUntil(at("2027-03-10T07:00:00Z"))),
    ("2027-03-10T07:00:00Z", "renewal_upcoming", "Europe/Paris", SendNow()),
    ("2027-03-10T18:59:59Z", "renewal_upcoming", "Europe/Paris", SendNow()),
    ("2027-03-10T19:00:00Z", "renewal_upcoming", "Europe/Paris",
     WaitUntil(at("2027-03-11T07:00:00Z"))),
    ("2027-03-10T03:00:00Z", "reseller_code_expiring", "Europe/Paris", SendNow()),
    ("2027-03-10T03:00:00Z", "reseller_code_expired", "Europe/Paris", SendNow()),
    # 02:00Z is still 18:00 on the day before in Los Angeles: inside its window.
    ("2027-03-01T02:00:00Z", "payment_late", "America/Los_Angeles", SendNow()),
    ("2027-03-01T05:00:00Z", "payment_late", "America/Los_Angeles",
     WaitUntil(at("2027-03-01T16:00:00Z"))),
    # Spring forward in Paris (28 March 2027): the window opens at 08:00 CEST = 06:00Z.
    ("2027-03-28T05:00:00Z", "grace_ending", "Europe/Paris",
     WaitUntil(at("2027-03-28T06:00:00Z"))),
    ("2027-03-10T12:00:00Z", "grace_ending", "Not/A_Zone", SendNow()),
])
def test_customer_mail_waits_for_the_window_in_the_recipients_time(
    moment: str, kind: str, timezone: str, expected: object
) -> None:
    """08:00-20:00 on the recipient's wall clock; code mail never waits."""
    assert expected == window_decision(notice(kind, timezone), at(moment), POLICY)


@pytest.mark.parametrize(("start", "end", "moment", "expected"), [
    ("22:00", "06:00", "2027-03-10T23:00:00Z", SendNow()),
    ("22:00", "06:00", "2027-03-10T05:59:00Z", SendNow()),
    ("22:00", "06:00", "2027-03-10T06:00:00Z", WaitUntil(at("2027-03-10T22:00:00Z"))),
    ("22:00", "06:00", "2027-03-10T22:00:00Z", SendNow()),
    ("22:00", "06:00", "2027-03-10T12:00:00Z", WaitUntil(at("2027-03-10T22:00:00Z"))),
    ("00:00", "00:00", "2027-03-10T03:00:00Z", SendNow()),
])
def test_a_window_may_wrap_midnight_or_span_the_whole_day(
    start: str, end: str, moment: str, expected: object
) -> None:
    """start > end wraps midnight; start == end means any time."""
    policy = build_policy({"send_window": {"start": start, "end": end}})
    assert expected == window_decision(notice(timezone="UTC"), at(moment), policy)


def test_a_digest_whose_next_opening_falls_on_the_next_local_date_is_skipped() -> None:
    """Auckland, 21:00 on 10 March (08:00Z): the window reopens on 11 March local time,
    still 10 March in UTC; the digest of 10 March can no longer go out."""
    digest = notice("reseller_digest", "Pacific/Auckland", occasion=date(2027, 3, 10))
    assert isinstance(window_decision(digest, at("2027-03-10T08:00:00Z"), POLICY), Skip)
    assert WaitUntil(at("2027-03-09T19:00:00Z")) == window_decision(
        digest, at("2027-03-09T18:00:00Z"), POLICY)  # 07:00 on 10 March there


@pytest.mark.parametrize(("moment", "expected"), [
    ("2027-03-10T06:30:00Z", WaitUntil(at("2027-03-10T07:00:00Z"))),
    ("2027-03-10T08:00:00Z", SendNow()),
    ("2027-03-10T19:30:00Z", "skip"),  # 20:30 in Paris: its day's window is over
    ("2027-03-11T08:00:00Z", "skip"),  # the next day
])
def test_a_digest_goes_out_on_its_own_local_date_or_not_at_all(
    moment: str, expected: object
) -> None:
    """docs/rules.md: a day whose digest was not sent on that local date is skipped."""
    digest = notice("reseller_digest", occasion=date(2027, 3, 10))
    decision = window_decision(digest, at(moment), POLICY)
    if expected == "skip":
        assert isinstance(decision, Skip)
        assert "2027-03-10" in decision.reason
    else:
        assert expected == decision


ZONES = ("Europe/Paris", "America/Los_Angeles", "Pacific/Auckland", "Asia/Kolkata", "UTC",
         "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham")
moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                       timezones=st.just(UTC))


@given(moment=moments, zone=st.sampled_from(ZONES))
def test_the_window_decision_sends_exactly_inside_the_window(moment: datetime, zone: str) -> None:
    """Sent iff the local time is in [08:00, 20:00) (the oracle: the literal window read on
    the zone's wall clock); a wait ends at a moment that sends, within 13 hours. Catches:
    the window judged in UTC, an end included, a wait until the wrong day's opening."""
    decision = window_decision(notice(timezone=zone), moment, POLICY)
    local = moment.astimezone(ZoneInfo(zone)).time()
    assert isinstance(decision, SendNow) == (time(8) <= local < time(20))
    if isinstance(decision, WaitUntil):
        assert moment < decision.at <= moment + timedelta(hours=13)
        assert window_decision(notice(timezone=zone), decision.at, POLICY) == SendNow()


# --- the retry schedule ---------------------------------------------------------------


def test_the_default_schedule_spreads_retries_over_more_than_two_days() -> None:
    """RFC 5321 §4.5.4.1: at least 30 minutes apart in the end, give up after days."""
    retry = RetrySchedule()
    assert retry.span >= timedelta(days=2)
    assert retry.delays[-1] >= timedelta(minutes=30)
    assert list(retry.delays) == sorted(retry.delays)


@pytest.mark.parametrize(("attempts", "expected"), [
    (1, Retry(T + timedelta(minutes=5))),
    (2, Retry(T + timedelta(minutes=15))),
    (9, Retry(T + timedelta(hours=24))),
    (10, GiveUp(10)),
])
def test_each_failed_attempt_waits_longer_then_gives_up(attempts: int, expected: object) -> None:
    """The n-th failure waits the n-th delay; after the last delay's attempt, dead."""
    assert expected == retry_decision(attempts, T, RetrySchedule())


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=12))
def test_retries_never_go_back_in_time_and_always_end(delays: list[int]) -> None:
    """Any configured schedule: the n-th failure waits exactly the n-th delay of the list
    (the oracle is the list itself), then gives up. Catches: an off-by-one index, the
    first delay reused, one attempt more or fewer than the delays allow."""
    retry = RetrySchedule.from_minutes(delays)
    for attempts, minutes in enumerate(delays, start=1):
        assert Retry(T + timedelta(minutes=minutes)) == retry_decision(attempts, T, retry)
    assert GiveUp(len(delays) + 1) == retry_decision(len(delays) + 1, T, retry)


def test_a_schedule_without_delays_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetrySchedule(delays=())


# --- settling an attempt --------------------------------------------------------------

A, B = "a@x.example", "b@x.example"


def replies(*items: tuple[str, Verdict, int | None]) -> Outcome:
    return Outcome(tuple(Reply(address, verdict, code, f"text {code}")
                         for address, verdict, code in items))


def test_a_message_accepted_for_everyone_is_sent_at_the_real_time() -> None:
    real = T + timedelta(seconds=3)
    result = settle(notice(recipients=(A, B)), replies(
        (A, Verdict.ACCEPTED, 250), (B, Verdict.ACCEPTED, 250)), T, real, RetrySchedule())
    assert (result.status, result.attempts, result.sent_at) == ("sent", 1, real)
    assert result.last_error is None


def test_one_recipient_refused_for_good_among_two_is_recorded_and_the_rest_sent() -> None:
    """550 for one of two: sent to the other, the refusal kept per recipient."""
    result = settle(notice(recipients=(A, B)), replies(
        (A, Verdict.ACCEPTED, 250), (B, Verdict.PERMANENT, 550)), T, T, RetrySchedule())
    assert result.status == "sent"
    assert {"status": "failed", "code": 550, "reply": "text 550",
            "at": T.isoformat()} == result.results[B]
    assert result.refused == 1
    assert "550" in (result.last_error or "")


def test_a_recipient_refused_for_now_is_retried_alone() -> None:
    """452 for one of two: the other has it; the next attempt goes to the refused one."""
    first = settle(notice(recipients=(A, B)), replies(
        (A, Verdict.ACCEPTED, 250), (B, Verdict.TRANSIENT, 452)), T, T, RetrySchedule())
    assert (first.status, first.not_before) == ("retrying", T + timedelta(minutes=5))
    assert "452 text 452 (b@x.example)" == first.last_error
    again = notice(recipients=(A, B), attempts=first.attempts, results=first.results)
    assert again.pending == (B,)
    later = T + timedelta(minutes=5)
    second = settle(again, replies((B, Verdict.ACCEPTED, 250)), later, later, RetrySchedule())
    assert (second.status, second.attempts, second.sent_at) == ("sent", 2, later)


def test_retries_exhausted_make_the_notice_dead() -> None:
    retry = RetrySchedule.from_minutes([5])
    last = settle(notice(attempts=1), replies((A, Verdict.TRANSIENT, 451)), T, T, retry)
    assert last.status == "dead"
    assert {"status": "dead", "code": 451, "reply": "text 451",
            "at": T.isoformat()} == last.results[A]
    assert "gave up after 2 attempts; last: 451 text 451 (a@x.example)" == last.last_error


def test_a_long_reply_is_kept_to_its_first_500_characters() -> None:
    long = Outcome((Reply(A, Verdict.PERMANENT, 550, "x" * 600),))
    result = settle(notice(), long, T, T, RetrySchedule())
    assert "x" * 500 == result.results[A]["reply"]


def test_refused_for_good_by_everyone_is_failed_at_once() -> None:
    result = settle(notice(), replies((A, Verdict.PERMANENT, 554)), T, T, RetrySchedule())
    assert (result.status, result.not_before, result.sent_at) == ("failed", None, None)


# --- the Date header ------------------------------------------------------------------


def test_the_date_header_records_the_hand_over_and_replaces_any_other() -> None:
    when = datetime(2027, 3, 10, 9, 1, 2, tzinfo=UTC)
    stamped = stamp_date(b"From: a@x\r\nTo: b@y\r\n\r\nbody\r\n", when)
    assert stamped == (b"Date: Wed, 10 Mar 2027 09:01:02 +0000\r\n"
                       b"From: a@x\r\nTo: b@y\r\n\r\nbody\r\n")
    restamped = stamp_date(stamped.replace(b"Date:", b"DATE:"), when + timedelta(hours=1))
    assert message_from_bytes(restamped).get_all("Date") == ["Wed, 10 Mar 2027 10:01:02 +0000"]
    assert stamp_date(b"To: b@y\n\nDate: not a header\n", when).count(b"Date:") == 2


# --- claims ---------------------------------------------------------------------------


def test_a_claimed_notice_is_not_claimed_again_until_its_lease_ends(engine: Engine) -> None:
    """Two processes never hold one notice; a dead process's lease expires."""
    first_id = queue_notice(engine, ref="s1")
    lease = timedelta(minutes=15)
    with engine.begin() as connection:
        mine = claim(connection, T, T, "a" * 32, lease, 10)
    with engine.begin() as connection:
        theirs = claim(connection, T, T + timedelta(minutes=14), "b" * 32, lease, 10)
    with engine.begin() as connection:
        after = claim(connection, T, T + lease, "c" * 32, lease, 10)
    assert ([n.id for n in mine], theirs, [n.id for n in after]) == ([first_id], [], [first_id])


def test_a_claim_leases_at_most_its_batch_in_order(engine: Engine) -> None:
    """A batch of 4 out of 10 due notices takes 4, the next claim the next 4 (on
    PostgreSQL an `IN (… LIMIT … FOR UPDATE SKIP LOCKED)` subquery once took all 10)."""
    ids = [queue_notice(engine, ref=f"s{i}") for i in range(10)]
    lease = timedelta(minutes=15)
    batches = []
    for token in ("a", "b", "c", "d"):
        with engine.begin() as connection:
            batches.append([n.id for n in claim(connection, T, T, token * 32, lease, 4)])
    assert [ids[0:4], ids[4:8], ids[8:10], []] == batches


def test_a_renewed_lease_keeps_the_notice_from_other_processes(engine: Engine) -> None:
    """A slow drain renews its lease; only the renewed expiry frees the notice."""
    queue_notice(engine)
    lease = timedelta(minutes=15)
    with engine.begin() as connection:
        claim(connection, T, T, "a" * 32, lease, 10)
        assert extend_lease(connection, "a" * 32, T + timedelta(minutes=20)) == 1
    with engine.begin() as connection:
        at_16 = claim(connection, T, T + timedelta(minutes=16), "b" * 32, lease, 10)
        at_20 = claim(connection, T, T + timedelta(minutes=20), "b" * 32, lease, 10)
    assert (len(at_16), len(at_20)) == (0, 1)


def test_only_waiting_and_due_notices_are_claimed(engine: Engine) -> None:
    due = queue_notice(engine, ref="due")
    queue_notice(engine, ref="later", not_before=T + timedelta(minutes=1))
    queue_notice(engine, ref="sent", status="sent")
    queue_notice(engine, ref="cancelled", status="cancelled")
    retrying = queue_notice(engine, ref="retry", status="retrying", not_before=T)
    with engine.begin() as connection:
        claimed = claim(connection, T, T, "t" * 32, timedelta(minutes=5), 10)
        release(connection, "t" * 32)
    assert [n.id for n in claimed] == [due, retrying]
    assert row(engine, due).claim_token is None


def test_a_notice_cancelled_in_flight_stays_cancelled_unless_it_was_sent(engine: Engine) -> None:
    """A failure never revives a cancelled notice; a delivery is recorded, being a fact."""
    failed_id, sent_id = queue_notice(engine, ref="f"), queue_notice(engine, ref="s")
    with engine.begin() as connection:
        claimed = claim(connection, T, T, "t" * 32, timedelta(minutes=5), 10)
        connection.execute(update(NOTIFICATIONS).values(status="cancelled"))
    failed, sent = claimed
    write_settlements_now(engine, [
        settle(failed, replies(("paul@dupont.example", Verdict.TRANSIENT, 451)), T, T,
               RetrySchedule()),
        settle(sent, replies(("paul@dupont.example", Verdict.ACCEPTED, 250)), T, T,
               RetrySchedule()),
    ])
    assert (row(engine, failed_id).status, row(engine, sent_id).status) == ("cancelled", "sent")


def write_settlements_now(engine: Engine, settlements: list[Any]) -> None:
    with engine.begin() as connection:
        write_settlements(connection, settlements, T)


# --- the drain ------------------------------------------------------------------------


def deliver(engine: Engine, mailer: Any, moment: datetime = T, **options: Any) -> Any:
    return deliver_due(engine, POLICY, Settings(), moment, clock=clock_at(moment),
                       mailer=mailer, **options)


def test_a_notice_is_sent_once_with_its_message_id_date_and_kind(engine: Engine) -> None:
    notification_id = queue_notice(engine, recipients=(A, B))
    mailer = MemoryMailer()
    real = T + timedelta(seconds=7)
    counts = deliver_due(engine, POLICY, Settings(), T, clock=clock_at(real), mailer=mailer)
    again = deliver(engine, mailer, T + timedelta(hours=1))
    stored = row(engine, notification_id)
    message = message_from_bytes(mailer.delivered[0].data)
    assert (counts.as_dict(), again.as_dict()) == ({"sent": 1}, {})
    assert (stored.status, stored.attempts, stored.sent_at) == ("sent", 1, real)
    assert len(mailer.delivered) == 1
    assert mailer.delivered[0].recipients == (A, B)
    assert message["Message-ID"] == stored.message_id
    assert message["Date"] == "Wed, 10 Mar 2027 10:00:07 +0000"
    assert message["X-Notification-Kind"] == "renewal_upcoming"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message_of(engine, notification_id) is not None  # until the next pass


def test_mail_outside_the_window_waits_in_the_outbox_and_code_mail_does_not(
    engine: Engine
) -> None:
    """At 03:00 in Paris a renewal notice waits until 08:00; a code notice goes now."""
    night = at("2027-03-10T02:00:00Z")
    renewal = queue_notice(engine, ref="s1")
    code = queue_notice(engine, ref="k1", kind="reseller_code_expiring")
    mailer = MemoryMailer()
    counts = deliver(engine, mailer, night)
    assert counts.as_dict() == {"sent": 1, "deferred": 1}
    assert (row(engine, code).status, row(engine, renewal).status) == ("sent", "queued")
    assert row(engine, renewal).not_before == at("2027-03-10T07:00:00Z")
    assert deliver(engine, mailer, at("2027-03-10T06:59:00Z")).as_dict() == {}
    assert deliver(engine, mailer, at("2027-03-10T07:00:00Z")).as_dict() == {"sent": 1}
    assert len(mailer.delivered) == 2


def test_a_digest_not_delivered_on_its_date_is_cancelled_with_the_reason(
    engine: Engine
) -> None:
    digest = queue_notice(engine, kind="reseller_digest", audience="reseller", ref="r1",
                          occasion_date=date(2027, 3, 9))
    counts = deliver(engine, MemoryMailer())
    stored = row(engine, digest)
    assert counts.as_dict() == {"cancelled": 1}
    assert stored.status == "cancelled"
    assert "2027-03-09" in stored.last_error


def test_a_refused_message_is_retried_on_schedule_then_dead(engine: Engine) -> None:
    """451 three times with two delays: retrying, retrying, dead; nothing delivered."""
    notification_id = queue_notice(engine)
    mailer = MemoryMailer(Script(rcpt={"paul@dupont.example": 451}))
    retry = RetrySchedule.from_minutes([5, 60])
    moments = [T, T + timedelta(minutes=4), T + timedelta(minutes=5),
               T + timedelta(minutes=65)]
    seen = [deliver(engine, mailer, moment, retry=retry).as_dict() for moment in moments]
    stored = row(engine, notification_id)
    assert seen == [{"retrying": 1}, {}, {"retrying": 1}, {"dead": 1}]
    assert (stored.status, stored.attempts, mailer.delivered) == ("dead", 3, [])
    assert "451" in stored.last_error


def test_a_message_that_cannot_be_built_is_named_and_the_others_go_out(engine: Engine) -> None:
    broken = queue_notice(engine, ref="broken")
    fine = queue_notice(engine, ref="fine")

    def build(notification: Any) -> tuple[bytes, str]:
        if notification.ref == "broken":
            raise KeyError("template")
        return (b"From: a@x\r\nTo: b@y\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n", "<m@x>")

    mailer = MemoryMailer()
    counts = asyncio.run(drain(engine, mailer, POLICY, T, clock=clock_at(T), build=build))
    assert counts.as_dict() == {"sent": 1, "retrying": 1}
    assert [e["id"] for e in counts.errors] == [str(broken)]
    assert (row(engine, broken).status, row(engine, fine).status) == ("retrying", "sent")


def test_the_same_bytes_and_message_id_go_out_on_every_attempt(engine: Engine) -> None:
    """Byte for byte, but for the Date header stamped at each hand-over."""
    queue_notice(engine, recipients=(A, B))
    mailer = MemoryMailer(Script(rcpt={B: 452}))
    deliver(engine, mailer)
    mailer.script = Script()
    later = T + timedelta(minutes=5)
    deliver(engine, mailer, later)
    first, second = mailer.delivered
    assert (first.recipients, second.recipients) == ((A,), (B,))
    assert first.data.startswith(b"Date: Wed, 10 Mar 2027 10:00:00 +0000\r\n")
    assert second.data.startswith(b"Date: Wed, 10 Mar 2027 10:05:00 +0000\r\n")
    assert without_date(first.data) == without_date(second.data)
    assert message_from_bytes(first.data)["Message-ID"] == message_from_bytes(
        second.data)["Message-ID"]


def without_date(data: bytes) -> bytes:
    head, body = data.split(b"\r\n\r\n", 1)
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Date: ")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_two_processes_draining_at_once_send_each_notice_exactly_once(
    engine: Engine, database_url: str
) -> None:
    """Two processes (here two engines, two event loops, two threads) share the outbox
    safely: claims, not turn-taking, keep them apart."""
    ids = [queue_notice(engine, ref=f"s{i}") for i in range(60)]
    other = make_engine(database_url)
    mailers = [MemoryMailer(), MemoryMailer()]
    small = RetrySchedule(batch=7)

    def process(engine: Engine, mailer: MemoryMailer) -> None:
        asyncio.run(drain(engine, mailer, POLICY, T, clock=clock_at(T), retry=small))

    threads = [threading.Thread(target=process, args=(e, m))
               for e, m in zip((engine, other), mailers, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    other.dispose()
    sent = [message_from_bytes(d.data)["Message-ID"] for m in mailers for d in m.delivered]
    assert len(sent) == len(set(sent)) == len(ids)
    assert {row(engine, i).status for i in ids} == {"sent"}


def test_without_smtp_url_messages_become_eml_files(engine: Engine, tmp_path: Path) -> None:
    """The README: SMTP_URL unset writes .eml files under the mail directory."""
    notification_id = queue_notice(engine)
    settings = Settings(mail_dir=tmp_path / "mail")
    counts = deliver_due(engine, POLICY, settings, T, clock=clock_at(T))
    files = list((tmp_path / "mail").glob("*.eml"))
    assert counts.transport == f"files under {tmp_path / 'mail'}"
    assert counts.as_dict() == {"sent": 1}
    assert [f.name for f in files] == [f"{notification_id:08d}-renewal_upcoming-customer.eml"]
    assert message_from_bytes(files[0].read_bytes())["Date"] is not None


def test_an_unwritable_mail_directory_is_a_transient_failure(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a directory")
    outgoing = Outgoing("k", "a@x", (A,), b"x", "<m@x>")
    outcome = asyncio.run(FileMailer(tmp_path / "blocked").send(outgoing))
    assert outcome.replies[0].verdict is Verdict.TRANSIENT


def test_a_dry_run_plans_without_claiming(engine: Engine, policy: Policy) -> None:
    """The plan counts what a drain would do and leaves every row as it was: a drain
    right after it still claims and sends the same notices."""
    queue_notice(engine, ref="now")
    queue_notice(engine, ref="later", timezone="Asia/Tokyo")  # 19:00 there: 1 h left
    queue_notice(engine, ref="night", timezone="America/Los_Angeles")  # 02:00 there
    queue_notice(engine, ref="digest", kind="reseller_digest", audience="reseller",
                 occasion_date=date(2027, 3, 9))  # yesterday's digest: skipped
    before = all_rows(engine)
    with engine.connect() as connection:
        plan = plan_due(connection, policy, T)
    assert dict(plan) == {"send": 2, "wait": 1, "skip": 1}
    assert before == all_rows(engine)
    assert deliver(engine, MemoryMailer()).as_dict() == {
        "sent": 2, "deferred": 1, "cancelled": 1}


def all_rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(NOTIFICATIONS).order_by(NOTIFICATIONS.c.id)))


def test_a_message_is_kept_while_its_notice_waits_and_swept_once_it_is_final(
    engine: Engine,
) -> None:
    """Messages of notices in a final state go (each pass sweeps them); those of waiting
    notices stay."""
    waiting, sent, cancelled = (queue_notice(engine, ref=ref) for ref in ("w", "s", "c"))
    with engine.begin() as connection:
        build_messages(connection, [waiting, sent, cancelled])
        connection.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == sent)
                           .values(status="sent"))
        connection.execute(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id == cancelled)
                           .values(status="cancelled"))
        assert 2 == forget_messages(connection)
        assert 0 == forget_messages(connection)
    assert [message_of(engine, n) is None for n in (waiting, sent, cancelled)] == [
        False, True, True]


def test_messages_built_when_queued_are_sent_as_they_are(engine: Engine) -> None:
    """A pass may build at queue time; the drain then sends those bytes, Date added."""
    notification_id = queue_notice(engine)
    with engine.begin() as connection:
        built, failed = build_messages(connection, [notification_id])
    data, message_id = built[notification_id]
    stored = row(engine, notification_id)
    assert (failed, message_of(engine, notification_id), stored.message_id) == (
        {}, data, message_id)
    assert b"\r\nDate:" not in data.split(b"\r\n\r\n")[0]
    mailer = MemoryMailer()
    deliver(engine, mailer)
    assert mailer.delivered[0].data.endswith(data)


def test_an_address_that_would_inject_a_header_is_never_sent(engine: Engine) -> None:
    """The message builder refuses it; the outbox names the notice, sends nothing, and
    marks it failed: the row's own data cannot get better by retrying."""
    notification_id = queue_notice(
        engine, recipients=("paul@dupont.example\r\nBcc: victim@evil.example",))
    mailer = MemoryMailer()
    counts = deliver(engine, mailer)
    assert mailer.delivered == []
    assert [e["id"] for e in counts.errors] == [str(notification_id)]
    assert row(engine, notification_id).status == "failed"
    assert "UnsafeHeader" in row(engine, notification_id).last_error
