"""The `import` command's engine: load or update the portal's records from a JSON file.

All or nothing (README, "Import format"): every record is checked first, against the
file and the database together; any error refuses the whole file with `ImportRejected`,
listing every error as `path: message` (`customers[3].timezone: unknown timezone
'Europe/Pariss'`). Otherwise everything is written in one transaction. Records are
upserted by `id`: a re-import changes only the fields it carries (`null` clears), and
never the columns the worker derives; `worker.importing.ownership` says, field by
field, who owns it and what a re-import may do to it. The report lists, record by
record, what changed and what was ignored and why. `dry_run` checks, counts and reports,
then rolls back. A real import gets its own row (`imports`) and audits what it changed.

The parts live in `worker.importing`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from worker.config.policy import Policy
from worker.errors import ImportRejected
from worker.importing.report import ImportReport, SectionCounts
from worker.importing.run import run_import

__all__ = ["MAX_FILE_MB", "ImportReport", "SectionCounts", "import_data", "import_file"]


MAX_FILE_MB = 16


def import_file(engine: Engine, path: Path, policy: Policy, *, started_at: datetime,
                dry_run: bool = False, max_mb: float = MAX_FILE_MB) -> ImportReport:
    """Import the JSON file at `path`; an unreadable file is refused like an invalid one.

    `started_at` (the caller's clock) is the moment recorded for the import in the audit trail.
    All or nothing means every record is held in memory until the write commits: about
    20 bytes of memory per byte of file (a valid 15.7 MB file peaked at 345 MB). A file
    above `max_mb` is refused before it is read, so an import's memory stays bounded
    whatever it is given (a 50 MB file, a device that never ends). Larger portfolios
    come in several files: an import upserts, so sections and batches can arrive apart.
    """
    raw = _read(path, int(max_mb * 1_000_000))
    return import_data(engine, raw, policy, dry_run=dry_run, started_at=started_at)


def _read(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as file:
            raw = file.read(limit + 1)
    except OSError as error:
        raise ImportRejected([f"file: cannot read {path}: {error.strerror or error}"]) from None
    if len(raw) > limit:
        raise ImportRejected([
            f"file: larger than the import limit of {limit / 1_000_000:g} MB; split it into "
            "several files (records are upserted by id, so sections and batches can come "
            "apart) or raise the limit with --max-mb"])
    return raw


def import_data(engine: Engine, raw: bytes | str, policy: Policy, *, started_at: datetime,
                dry_run: bool = False) -> ImportReport:
    """Import a JSON document given as bytes (UTF-8) or text."""
    return run_import(engine, raw, policy, dry_run=dry_run, started_at=started_at)
