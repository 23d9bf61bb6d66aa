"""HTTP receivers on 127.0.0.1 for webhooks, one per job.

- `running_receiver()`: in this process, for the webhook tests: it records every request
  and answers as the test says (a status code, or a sleep past the client's timeout).
- `CountingReceiver`: `python -m testkit.http` in a process of its own (the machine's
  other core), for the webhook benchmark: a minimal HTTP/1.1 server (asyncio,
  keep-alive, 204 to every POST) that only counts requests and distinct webhook-ids,
  so that the benchmark measures the client, not the receiver.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.net import HOST, free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """`answer(request) -> (status, seconds to sleep first)`; default 204 at once."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.answer: Callable[[Received], tuple[int, float]] = lambda _request: (204, 0.0)
        self.url = ""

    def record(self, request: Received) -> tuple[int, float]:
        with self.lock:
            self.requests.append(request)
        return self.answer(request)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            request = Received({k.lower(): v for k, v in self.headers.items()}, body,
                               time.monotonic())
            status, delay = receiver.record(request)
            if delay:
                time.sleep(delay)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer((HOST, 0), _handler(receiver))
    server.daemon_threads = True
    server.block_on_close = False
    receiver.url = f"http://{HOST}:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused."""
    return f"http://{HOST}:{free_port()}/hooks"


# --- the counting receiver, in a process of its own -----------------------------------


async def _count_requests() -> None:
    """Answer 204 to every request; print the port; on stdin "count": requests and ids."""
    requests, ids = 0, set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, webhook_id = 0, None
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"webhook-id":
                        webhook_id = value.strip()
                await reader.readexactly(length)
                requests += 1
                ids.add(webhook_id)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "count":
            print(json.dumps([requests, len(ids)]), flush=True)
            requests, ids = 0, set()
    server.close()


class CountingReceiver:
    """The counting receiver's process: its `url`; it ends when closed."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "testkit.http"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        self.url = f"http://{HOST}:{int(self.process.stdout.readline())}/hooks"

    def take_count(self) -> tuple[int, int]:
        """(requests, distinct webhook-ids) since the last call."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        requests, ids = json.loads(self.process.stdout.readline())
        return requests, ids

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(_count_requests())
