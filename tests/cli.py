"""Runs the real `renewal-worker` command as a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCRIPT = Path(sys.executable).parent / "renewal-worker"


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


def run_cli(*args: str, database_url: str, cwd: Path, **env: str) -> Result:
    environ = {key: value for key, value in os.environ.items()
               if key not in ("SMTP_URL", "WORKER_CONFIG", "HEALTH_PORT")}
    environ.update({"DATABASE_URL": database_url, "WORKER_MAIL_DIR": str(cwd / "mail")}, **env)
    done = subprocess.run([*command(), *args], capture_output=True, text=True, env=environ,
                          cwd=cwd, timeout=120, check=False)
    return Result(done.returncode, done.stdout, done.stderr)
