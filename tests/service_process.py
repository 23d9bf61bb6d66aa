"""`renewal-worker start` as a subprocess, as an operator runs it: start, probe, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from testkit.cli import command

BOUND = 10  # seconds: shutdown.within_seconds in these tests


def count(url: str, table: Any, *where: Any) -> int:
    """A plain read (no write lock on SQLite) of how many rows match."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table).where(*where))
                       or 0)
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], bool], seconds: float, service: subprocess.Popen[str],
             log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert service.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextlib.contextmanager
def started(database_url: str, cwd: Path, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`renewal-worker start`, its log in `cwd / start.log`; killed if a test fails."""
    config = cwd / "service.toml"
    config.write_text(f"[shutdown]\nwithin_seconds = {BOUND}\n", encoding="utf-8")
    environ = {key: value for key, value in os.environ.items()
               if key not in ("SMTP_URL", "HEALTH_PORT", "HEALTH_HOST")}
    environ.update({"DATABASE_URL": database_url, "WORKER_MAIL_DIR": str(cwd / "mail"),
                    "WORKER_CONFIG": str(config)}, **env)
    with (cwd / "start.log").open("w") as log:
        service = subprocess.Popen([*command(), "start"], cwd=cwd, env=environ,
                                   stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        yield service
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=30)


def stop(service: subprocess.Popen[str], signum: int = signal.SIGTERM) -> float:
    """Send `signum`; the seconds until the process ended."""
    sent = time.monotonic()
    service.send_signal(signum)
    service.wait(timeout=BOUND + 20)
    return time.monotonic() - sent


def events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found
