"""Loopback addresses for the servers that tests and benchmarks start: a free port."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on `HOST` that nothing listens on right now (the caller binds it soon)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
