"""A stop request, as long-running work sees it: looked at between two units of work.

`start` sets a `threading.Event` on SIGTERM/SIGINT; a pass looks at it between chunks
and the outbox's drain between claims and between messages. A plain callable returning
True works too (tests, embedding).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Stop = threading.Event | Callable[[], bool] | None


def requested(stop: Stop) -> bool:
    """Has a stop been requested? None never asks to stop."""
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())
