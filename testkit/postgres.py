"""A throwaway PostgreSQL server, started from Debian's binaries: the test session's
(tests/conftest.py, and the fault tests' own servers) and the benchmarks' `--postgres`.

pytest-postgresql refuses to run as root, and these machines run everything as root, so
the server is started here as the `postgres` user on a free loopback port, in a fresh
data directory, and stopped (and deleted) when its block ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testkit.net import free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine."""


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        found = shutil.which("initdb")
        if not found:
            raise PostgresUnavailable("PostgreSQL is not installed (no initdb found)")
        return Path(found).parent
    return Path(candidates[0]).parent


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass(frozen=True)
class Server:
    """A running throwaway server: its URL, and a restart as maintenance does one."""

    url: str
    port: int
    root: Path
    bin_dir: Path

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server is back when it
        returns (as a managed database's maintenance or a failover does)."""
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                          "-l", str(self.root / "server.log"), "-m", "fast", "-w", "restart"]),
            check=True, capture_output=True, timeout=60,
        )
        _wait_for(self.port)

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: the server is gone until `start`."""
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                          "-m", "fast", "-w", "stop"]),
            check=True, capture_output=True, timeout=60,
        )

    def start(self) -> None:
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"),
                          "-o", _options(self.port, self.root / "sock"),
                          "-l", str(self.root / "server.log"), "-w", "start"]),
            check=True, capture_output=True, timeout=60,
        )
        _wait_for(self.port)


def _options(port: int, sockets: Path) -> str:
    return f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """Yield the URL of a fresh server's `postgres` database; stop it afterwards."""
    with server_process() as server:
        yield server.url


@contextlib.contextmanager
def server_process() -> Iterator[Server]:
    """A fresh server (see `Server`); stopped and deleted afterwards."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="worker-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                      "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"]),
        check=True, capture_output=True,
    )
    options = _options(port, sockets)
    subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                      "-l", str(root / "server.log"), "-w", "start"]),
        check=True, capture_output=True,
    )
    try:
        _wait_for(port)
        yield Server(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", port, root,
                     bin_dir)
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False, capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not start on port {port}")
