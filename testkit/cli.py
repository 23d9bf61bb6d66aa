"""Runs the real `renewal-worker` command as a subprocess, as an operator would: the
command itself, the environment it gets, and one run of it to its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.db.engine import make_engine, upgrade

_SCRIPT = Path(sys.executable).parent / "renewal-worker"
# Settings of the caller's own shell that would redirect a worker started here.
_NOT_INHERITED = ("SMTP_URL", "WORKER_CONFIG", "HEALTH_PORT")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def command() -> list[str]:
    """The installed console script, else `python -m worker` (the same entry point)."""
    return [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "worker"]


def environ(database_url: str, mail_dir: Path, **env: str) -> dict[str, str]:
    """This process's environment without the caller's SMTP relay, configuration file and
    health port; the database and the folder of `.eml` files given; `env` on top."""
    found = {key: value for key, value in os.environ.items() if key not in _NOT_INHERITED}
    found.update({"DATABASE_URL": database_url, "WORKER_MAIL_DIR": str(mail_dir)}, **env)
    return found


def run_cli(*args: str, database_url: str, cwd: Path, **env: str) -> Result:
    done = subprocess.run([*command(), *args], capture_output=True, text=True,
                          env=environ(database_url, cwd / "mail", **env), cwd=cwd,
                          timeout=120, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def migrated_sqlite(folder: Path, name: str = "worker.db") -> str:
    """The URL of a new SQLite file under `folder` with the schema in place, as
    `renewal-worker db upgrade` leaves it (every other command refuses a missing file)."""
    url = f"sqlite:///{folder / name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url
