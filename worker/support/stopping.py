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

log = structlog.get_logger("worker.support.stopping")

Stop = threading.Event | Callable[[], bool] | None


def requested(stop: Stop) -> bool:
    """Has a stop been requested? None never asks to stop."""
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


class Received:
    """The signals a process has received, noted by a signal handler.

    A handler runs between two bytecodes of the main thread, and two signals that
    arrive together can run one handler inside the other. A flag tested, then set, then
    loses one of them (the inner handler runs between the test and the set): a SIGTERM
    and a SIGINT sent back to back were taken for one signal about once in 60 tries. One
    `list.append` cannot be split that way: `note` returns how many signals have come,
    this one included, and exactly one of two handlers sees 2."""

    def __init__(self) -> None:
        self._numbers: list[int] = []

    def note(self, signum: int) -> int:
        self._numbers.append(signum)
        return len(self._numbers)

    @property
    def first(self) -> str | None:
        """The name of the first signal received, or None."""
        return signal.Signals(self._numbers[0]).name if self._numbers else None


class SignalStop:
    """A stop request from SIGTERM/SIGINT, for work on the main thread (`run --once`).

    The handler only notes the signal: it runs between two bytecodes of the main thread,
    possibly inside a log call or a lock another call holds, where logging or setting a
    `threading.Event` would wait for ever. The request is logged by whoever first looks at
    it. A second signal raises KeyboardInterrupt: the process ends at once."""

    def __init__(self) -> None:
        self.received = Received()
        self._told = False

    @property
    def signal(self) -> str | None:
        return self.received.first

    def install(self) -> SignalStop:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.received.note(signum) > 1:
            raise KeyboardInterrupt

    def __call__(self) -> bool:
        if self.signal is None:
            return False
        if not self._told:
            self._told = True
            log.info("pass_stopping", signal=self.signal)
        return True
