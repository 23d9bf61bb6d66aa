"""The few exception types callers act on, each carrying what the caller needs, and how to
describe any error in one line. Imports nothing of the worker: every layer may use it."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the worker's own errors."""


class ConfigError(WorkerError):
    """A setting or policy value is wrong; the message names the key. Exit status 2."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ImportRejected(WorkerError):
    """An import file was refused as a whole; `errors` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s) in the import file")
        self.errors = errors


class RecordError(WorkerError):
    """One stored record cannot be evaluated; the pass names it, skips it and goes on."""


def describe(error: BaseException) -> str:
    """One line: the error's type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def one_line(text: str) -> str:
    """`text` as one printable line: control and format characters (CR, LF, ESC, a
    right-to-left override taken from a setting or an argument) are written as escapes,
    so that an error never spans two lines or rewrites the operator's terminal."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
