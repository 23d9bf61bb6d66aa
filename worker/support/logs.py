"""Logging set-up, called once at the program's edge (the CLI).

Events go to standard error only: standard output is kept for machine-readable output
(`export`, `--json`, `forecast --format json`). On a terminal they are rendered for a
person; anywhere else (a pipe, a file, a process manager) as one JSON object a line.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import Processor

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Send structlog events to stderr, as JSON unless stderr is a terminal.

    `json=None` decides by `sys.stderr.isatty()`; `level` is a name such as "info"
    (an unknown name raises ValueError).
    """
    try:
        threshold = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r} (expected one of {', '.join(_LEVELS)})"
        ) from None
    stream = sys.stderr
    as_json = not stream.isatty() if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if as_json:
        # Tracebacks as data, without local variables (they may hold credentials).
        processors.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
