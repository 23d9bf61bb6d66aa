"""The real command: wrong webhook settings stop it at start (exit 2, one line naming
the key); `run --once` pushes after delivering mail, `--dry-run` pushes nothing, and
`status` shows the endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.cli import migrated_sqlite, run_cli
from testkit.http import running_receiver
from tests.webhooks_helpers import SECRET, add_event
from worker.db.engine import make_engine

pytestmark = pytest.mark.e2e
AS_OF = "2027-03-01T09:00:00Z"


@pytest.mark.parametrize(("env", "toml", "key"), [
    ({"WEBHOOK_URL": "http://portal.example/hooks", "WEBHOOK_SECRET": SECRET}, None,
     "WEBHOOK_URL"),
    ({"WEBHOOK_URL": "https://portal.example/hooks"}, None, "WEBHOOK_SECRET"),
    ({"WEBHOOK_URL": "https://portal.example/hooks", "WEBHOOK_SECRET": "sk_live_abc"}, None,
     "WEBHOOK_SECRET"),
    ({}, '[[webhooks.endpoints]]\nname = "crm"\nurl = "http://10.0.0.5/h"\n'
         f'secrets = ["{SECRET}"]\n', "webhooks.endpoints.0.url"),
    ({}, '[[webhooks.endpoints]]\nname = "crm"\nurl = "https://crm.example/h"\n',
     "webhooks.endpoints.0.secrets"),
    ({}, "[webhooks]\nretry_delays_minutes = [5, 60]\n", "webhooks.retry_delays_minutes"),
])
def test_a_wrong_webhook_setting_stops_the_program_at_start(
    tmp_path: Path, env: dict[str, str], toml: str | None, key: str
) -> None:
    if toml is not None:
        (tmp_path / "worker.toml").write_text(toml, encoding="utf-8")
        env = {**env, "WORKER_CONFIG": str(tmp_path / "worker.toml")}
    result = run_cli("run", "--once", database_url=f"sqlite:///{tmp_path / 'w.db'}",
                     cwd=tmp_path, **env)
    assert 2 == result.code
    assert key in result.stderr
    assert 1 == len(result.stderr.strip().splitlines()), result.stderr
    assert not (tmp_path / "w.db").exists()  # stopped before touching anything


def test_run_once_pushes_after_mail_and_a_dry_run_pushes_nothing(tmp_path: Path) -> None:
    url = migrated_sqlite(tmp_path, "w.db")
    with running_receiver() as receiver:
        env = {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}

        first = run_cli("run", "--once", "--as-of", AS_OF, "--json", database_url=url,
                        cwd=tmp_path, **env)
        assert 0 == first.code, first.stderr
        assert {} == first.json()["webhooks"]  # the endpoint registered, nothing yet
        engine = make_engine(url)
        _, event_id = add_event(engine)
        engine.dispose()
        dry = run_cli("run", "--once", "--as-of", AS_OF, "--dry-run", "--json",
                      database_url=url, cwd=tmp_path, **env)
        assert 0 == dry.code, dry.stderr
        assert "webhooks" not in dry.json()
        assert [] == receiver.requests
        done = run_cli("run", "--once", "--as-of", AS_OF, "--json", database_url=url,
                       cwd=tmp_path, **env)
        assert {"enqueued": 1, "delivered": 1} == done.json()["webhooks"]
        assert [event_id] == receiver.ids()
        status = run_cli("status", "--format", "json", database_url=url, cwd=tmp_path, **env)
        webhooks = status.json()["webhooks"]
        assert {"delivered": 1} == webhooks["deliveries"]
        assert [("default", receiver.url, "enabled")] == [
            (e["name"], e["url"], e["state"]) for e in webhooks["endpoints"]]
        engine = make_engine(url)
        add_event(engine)
        engine.dispose()
        text = run_cli("run", "--once", "--as-of", AS_OF, database_url=url, cwd=tmp_path, **env)
        assert "  webhooks: 1 enqueued, 1 delivered" in text.stdout.splitlines()
        table = run_cli("status", database_url=url, cwd=tmp_path, **env).stdout
        assert "Webhook endpoints (1)" in table
