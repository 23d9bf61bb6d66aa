"""An SMTP server in its own process that notes the Message-ID of every message it
accepts, for the fault tests: it outlives the workers that the tests kill, and counts
what a customer would have received.

    python -m tests.smtp_sink --port P --log FILE [--delay SECONDS]

Each accepted message appends one line (its Message-ID) to FILE, flushed before the 250
is said, so a line exists for every message the server took. `--delay` holds the 250
back that long, so that messages are in flight when a test strikes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.smtp_server import HOST, free_port

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def serve(port: int, log: Path, delay: float) -> None:
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self) -> None:
            self.out = log.open("ab", buffering=0)

        async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any,
        ) -> str:
            if delay:
                await asyncio.sleep(delay)
            found = _MESSAGE_ID.search(envelope.original_content or b"")
            self.out.write((found.group(1) if found else b"<none>") + b"\n")
            return "250 2.0.0 Queued"

    controller = Controller(Handler(), hostname=HOST, port=port, server_hostname="sink")
    controller.start()
    stopped = False

    def stop(*_args: Any) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while not stopped:
        time.sleep(0.1)
    controller.stop()


class Sink:
    """A running sink: its `url`, what it received (`received()`, from an offset)."""

    def __init__(self, log: Path, delay: float = 0.0) -> None:
        self.log = log
        self.log.touch()
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.smtp_sink", "--port", str(self.port), "--log",
             str(log), "--delay", str(delay)],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}"

    def mark(self) -> int:
        """An offset: `received(mark)` counts only what arrives after it."""
        return self.log.stat().st_size

    def received(self, since: int = 0) -> Counter[str]:
        """Messages accepted per Message-ID."""
        with self.log.open("rb") as lines:
            lines.seek(since)
            return Counter(line.decode().strip() for line in lines if line.endswith(b"\n"))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def running_sink(log: Path, delay: float = 0.0) -> Iterator[Sink]:
    sink = Sink(log, delay)
    try:
        yield sink
    finally:
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    serve(args.port, args.log, args.delay)


if __name__ == "__main__":
    main()
