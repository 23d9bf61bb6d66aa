"""Where bounce reports come from: files, a Maildir, standard input.

A Maildir is read the way a mail client reads it: each message in `new/` is taken, and
once it has been dealt with (recorded, or named as no bounce) it moves to `cur/` with
the `S` (seen) flag, so that a Maildir read on a schedule reads each report once. The
recording itself is idempotent, so a crash between the commit and the move only means
the report is read again, changing nothing.

Imports: the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class Source:
    """One report to read: its name for the output, its bytes (None: unreadable, with
    `error`), and what to do once it has been dealt with."""

    name: str
    data: bytes | None
    error: str | None = None
    done: Callable[[], None] | None = None


def from_files(paths: list[Path], stdin: BinaryIO) -> Iterator[Source]:
    for path in paths:
        if str(path) == "-":
            yield Source("<stdin>", stdin.read())
            continue
        try:
            yield Source(str(path), path.read_bytes())
        except OSError as error:
            yield Source(str(path), None, f"cannot read it: {error.strerror or error}")


def from_maildir(folder: Path) -> Iterator[Source]:
    """The messages of `folder/new`, oldest first; each moved to `cur/` when done."""
    new, cur = folder / "new", folder / "cur"
    if not new.is_dir() or not cur.is_dir():
        raise FileNotFoundError(f"{folder} is not a Maildir (no new/ and cur/ folders)")
    entries = sorted((entry for entry in os.scandir(new) if entry.is_file()),
                     key=lambda entry: (entry.stat().st_mtime, entry.name))
    for entry in entries:
        path = Path(entry.path)
        try:
            data = path.read_bytes()
        except OSError as error:
            yield Source(str(path), None, f"cannot read it: {error.strerror or error}")
            continue
        yield Source(str(path), data, done=_mover(path, cur))


def _mover(path: Path, cur: Path) -> Callable[[], None]:
    def move() -> None:
        name = path.name if ":2," in path.name else f"{path.name}:2,S"
        path.replace(cur / name)
    return move
