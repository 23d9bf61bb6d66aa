"""Pure parts of webhooks: URL and secret checks, endpoint filters, the retry schedule
and the body's bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from tests.webhooks_helpers import SECRET, T0, add_event
from worker.config.checks import check_secret, check_url
from worker.config.endpoints import Endpoint
from worker.config.policy import build_policy, load_policy
from worker.config.settings import load_settings
from worker.db.schema import EVENTS
from worker.drain.schedule import RetrySchedule, next_attempt
from worker.errors import ConfigError
from worker.webhooks.schedule import Answer, retry_schedule, settle
from worker.webhooks.signing import event_body, headers
from worker.webhooks.store import type_filter


@pytest.mark.parametrize("url", ["https://portal.example/hooks", "http://127.0.0.1:8080/h",
                                 "http://localhost/h", "http://[::1]:9000/h",
                                 "http://127.5.6.7/h"])
def test_accepted_urls(url: str) -> None:
    assert url == check_url(url)


@pytest.mark.parametrize(("url", "problem"), [
    ("http://portal.example/hooks", "loopback"), ("http://10.0.0.1/h", "loopback"),
    ("ftp://127.0.0.1/h", "scheme"), ("https:///h", "host"), ("https://x:99999/h", "port"),
    ("portal.example/hooks", "scheme")])
def test_refused_urls_say_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_url(url)


@pytest.mark.parametrize(("secret", "problem"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"), ("whsec_!!!notbase64", "base64"),
    ("whsec_c2hvcnQ=", "too short"), ("whsec_", "too short")])
def test_refused_secrets_say_why(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_secret(secret)


def test_the_environment_gives_the_default_endpoint_with_a_rotation() -> None:
    settings = load_settings({"WEBHOOK_URL": "https://p.example/h",
                              "WEBHOOK_SECRET": f" {SECRET}  {SECRET} "})
    assert f"{SECRET} {SECRET}" == settings.webhook_secret
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET: required with WEBHOOK_URL"):
        load_settings({"WEBHOOK_URL": "https://p.example/h"})
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET: at most two"):
        load_settings({"WEBHOOK_URL": "https://p.example/h",
                       "WEBHOOK_SECRET": " ".join([SECRET] * 3)})


def test_endpoint_names_are_unique_and_default_is_reserved() -> None:
    table = {"url": "https://a.example/h", "secrets": [SECRET]}
    with pytest.raises(ConfigError, match=r"webhooks\.endpoints: .*used twice"):
        build_policy({"webhooks": {"endpoints": [{"name": "a", **table},
                                                 {"name": "a", **table}]}})
    with pytest.raises(ConfigError, match="WEBHOOK_URL's"):
        build_policy({"webhooks": {"endpoints": [{"name": "default", **table}]}})


def test_the_default_schedule_grows_and_spans_more_than_three_days() -> None:
    schedule = retry_schedule(load_policy())
    assert schedule.span >= timedelta(days=3)
    assert list(schedule.delays) == sorted(schedule.delays)
    assert schedule.delays[0] < schedule.delays[-1]


@given(st.integers(min_value=1, max_value=12), st.text(min_size=1, max_size=20))
def test_jitter_only_lengthens_and_is_bounded(attempts: int, key: str) -> None:
    schedule = RetrySchedule.from_minutes([1, 5, 30, 120, 300, 600, 1200, 1440, 1440, 1440],
                                          jitter=0.2)
    at = next_attempt(attempts, T0, schedule, key)
    if attempts > len(schedule.delays):
        assert at is None
    else:
        delay = schedule.delays[attempts - 1]
        assert at is not None
        assert delay <= at - T0 <= delay * 1.2
        assert at == next_attempt(attempts, T0, schedule, key)  # the same on every run


@pytest.mark.parametrize(("answer", "status"), [
    (Answer(200), "delivered"), (Answer(204), "delivered"), (Answer(299), "delivered"),
    (Answer(410, "Gone"), "gone"), (Answer(500), "retrying"), (Answer(404), "retrying"),
    (Answer(301), "retrying"), (Answer(None, "timeout"), "retrying")])
def test_what_an_answer_means(answer: Answer, status: str) -> None:
    schedule = RetrySchedule.from_minutes([1, 2])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    settled = settle(7, 0, "k", answer, T0, at, schedule)
    assert (status, 1) == (settled.status, settled.attempts)
    assert (settled.delivered_at == at) == (status == "delivered")
    assert (settled.next_attempt_at is not None) == (status == "retrying")
    assert "dead" == settle(7, 2, "k", Answer(500), T0, at, schedule).status


def test_the_body_is_the_same_bytes_and_only_the_timestamp_moves() -> None:
    body = event_body("customer.payment_standing_changed", T0, {"id": "c1", "to": "late"})
    assert body == event_body("customer.payment_standing_changed", T0,
                              {"id": "c1", "to": "late"})
    assert {"type": "customer.payment_standing_changed", "timestamp": "2027-03-01T09:00:00Z",
            "data": {"id": "c1", "to": "late"}} == json.loads(body)
    first = headers([SECRET], "evt_1", T0, body)
    later = headers([SECRET], "evt_1", T0 + timedelta(minutes=5), body)
    assert first["webhook-id"] == later["webhook-id"]
    assert int(later["webhook-timestamp"]) - int(first["webhook-timestamp"]) == 300
    assert first["webhook-signature"] != later["webhook-signature"]


TYPES = ["subscription.status_changed", "customer.payment_standing_changed",
         "customer.account_state_changed", "reseller_change_code.status_changed",
         "notification.sent", "notification.dead"]


def test_the_sql_type_filter_agrees_with_the_endpoint_filter(engine: Engine) -> None:
    for event_type in TYPES:
        add_event(engine, event_type)
    patterns_list = [("*",), ("subscription.*",), ("customer.*", "notification.dead"),
                     ("notification.?ent",), ("reseller_change_code.status_changed",),
                     ("customer%",)]
    with engine.connect() as connection:
        for patterns in patterns_list:
            endpoint = Endpoint("e", "https://e.example", (SECRET,), patterns)
            chosen = set(connection.scalars(select(EVENTS.c.type).where(type_filter(patterns))))
            assert {t for t in TYPES if endpoint.wants(t)} == chosen, patterns
            assert chosen == {t for t in TYPES if any(fnmatchcase(t, p) for p in patterns)}
