"""The file transport (SMTP_URL unset): each message becomes one `.eml` file.

A file is written under a temporary name and renamed, so a reader never sees half a
message; a message written again (the same notification) replaces its file. A disk that
refuses the write is a transient failure, like a server that cannot take the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from worker.mail.transports.base import Outcome, Outgoing, TransientFailure, Verdict


class FileMailer:
    """Writes `<directory>/<key>.eml`; every recipient counts as accepted."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def description(self) -> str:
        return f"files under {self.directory}"

    @property
    def concurrency(self) -> int:
        return 1

    async def send(self, message: Outgoing) -> Outcome:
        try:
            self.write(message)
        except OSError as error:
            failure = TransientFailure(f"cannot write {self.path_of(message)}: {error}")
            return failure.outcome(message.recipients)
        return Outcome.for_all(message.recipients, Verdict.ACCEPTED, 250,
                               f"written to {self.path_of(message)}")

    async def close(self) -> None:
        return None

    def path_of(self, message: Outgoing) -> Path:
        return self.directory / f"{message.key}.eml"

    def write(self, message: Outgoing) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_of(message)
        partial = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        partial.write_bytes(message.data)
        partial.replace(final)
        return final
