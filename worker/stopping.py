"""A stop request, as long-running work sees it: looked at between two units of work.

`start` sets a `threading.Event` on SIGTERM/SIGINT, `run --once` uses a `SignalStop`;
a pass looks at it between chunks and the outbox's drain between claims and between
messages. A plain callable returning True works too (tests, embedding).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("worker.stopping")

Stop = threading.Event | Callable[[], bool] | None


def requested(stop: Stop) -> bool:
    """Has a stop been requested? None never asks to stop."""
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


class SignalStop:
    """A stop request from SIGTERM/SIGINT, for work on the main thread (`run --once`).

    The handler only sets a flag: it runs between two bytecodes of the main thread,
    possibly inside a log call or a lock another call holds, where logging or setting a
    `threading.Event` would wait for ever. The request is logged by whoever first looks at
    it. A second signal raises KeyboardInterrupt: the process ends at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._told = False

    def install(self) -> SignalStop:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __call__(self) -> bool:
        if self.signal is None:
            return False
        if not self._told:
            self._told = True
            log.info("pass_stopping", signal=self.signal)
        return True
