"""The `import` command's engine: load or update the portal's records from a JSON file.

All or nothing (CONTRACT.md, "Import file"): every record is checked first, against the
file and the database together; any error refuses the whole file with `ImportRejected`,
listing every error as `path: message` (`customers[3].timezone: unknown timezone
'Europe/Pariss'`). Otherwise everything is written in one transaction. Records are
upserted by `id`: a re-import changes only the fields it carries (`null` clears), and
never the columns the worker derives. `dry_run` checks and counts, then rolls back.

The parts live in `worker.importing`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from worker.errors import ImportRejected
from worker.importing.report import ImportReport, SectionCounts
from worker.importing.run import run_import
from worker.policy import Policy

__all__ = ["ImportReport", "SectionCounts", "import_data", "import_file"]


def import_file(engine: Engine, path: Path, policy: Policy, *,
                dry_run: bool = False) -> ImportReport:
    """Import the JSON file at `path`; an unreadable file is refused like an invalid one."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ImportRejected([f"file: cannot read {path}: {error.strerror or error}"]) from None
    return run_import(engine, raw, policy, dry_run=dry_run)


def import_data(engine: Engine, raw: bytes | str, policy: Policy, *,
                dry_run: bool = False) -> ImportReport:
    """Import a JSON document given as bytes (UTF-8) or text."""
    return run_import(engine, raw, policy, dry_run=dry_run)
