"""What the benchmark scripts share with each other (what they share with the tests is
in testkit/): the figures they print for scripts/bench_all.py, the bench moment, and
where their databases live.

With `--json` every benchmark prints one JSON object on standard output, and its human
report on standard error, so that standard output holds that object alone:

    {"bench": NAME, "rows": [{"figure": TEXT, "value": NUMBER, "unit": TEXT,
                              "baseline": TEXT or null, "ratio": NUMBER or null,
                              "aim": TEXT or null}]}

`aim` is written as a comparison of the ratio (or, without a ratio, of the value) with a
number: "<= 1.3", ">= 20".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from testkit.portfolios import Plan
from testkit.postgres import running_server
from testkit.settled import build
from worker.config.policy import Policy
from worker.db.engine import make_engine

# Inside every sample zone's send window: the delivery, kill and webhook benchmarks' moment.
MOMENT = datetime(2027, 3, 10, 14, 0, tzinfo=UTC)
Row = dict[str, Any]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def row(figure: str, value: float, unit: str, *, baseline: str | None = None,
        ratio: float | None = None, aim: str | None = None) -> Row:
    return {"figure": figure, "value": round(value, 4), "unit": unit, "baseline": baseline,
            "ratio": None if ratio is None else round(ratio, 4), "aim": aim}


def print_json(bench: str, rows: list[Row]) -> None:
    print(json.dumps({"bench": bench, "rows": rows}), flush=True)


def bench_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("the bench moment needs an offset or Z")
    return moment.astimezone(UTC)


def size_label(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    return f"{size // 1000}k" if size % 1000 == 0 else str(size)


# --- a throwaway database ----------------------------------------------------------------


@contextlib.contextmanager
def database(name: str, *, postgres: bool, url: str | None = None) -> Iterator[str]:
    """The URL of an empty database: on a throwaway PostgreSQL server (`postgres`), the
    one given, or a SQLite file in a temporary directory."""
    if postgres:
        with running_server() as server:
            yield server
    elif url:
        yield url
    else:
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as folder:
            yield f"sqlite:///{folder}/{name}.db"


# --- where the prepared portfolios live --------------------------------------------------


class Backend(Protocol):
    name: str

    def is_prepared(self, name: str) -> bool: ...
    def create(self, name: str) -> str: ...
    def seal(self, name: str) -> None: ...
    def copy(self, name: str, copy: str) -> str: ...
    def drop(self, name: str) -> None: ...
    def url(self, name: str) -> str: ...
    def facts(self) -> dict[str, str]: ...
class SqliteBackend:
    """Database files in a work directory; a run's fresh copy is a copy of the file."""

    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def _path(self, name: str) -> Path:
        return self.workdir / f"{name}.db"

    def url(self, name: str) -> str:
        return f"sqlite:///{self._path(name)}"

    def is_prepared(self, name: str) -> bool:
        return (self.workdir / f"{name}.ready").exists()

    def create(self, name: str) -> str:
        self.drop(name)
        return self.url(name)

    def seal(self, name: str) -> None:
        with contextlib.closing(sqlite3.connect(self._path(name))) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (self.workdir / f"{name}.ready").touch()

    def copy(self, name: str, copy: str) -> str:
        """Copy the file and flush it to disk, so that the pass's first checkpoint does
        not pay for writing the whole copy out."""
        self.drop(copy)
        shutil.copyfile(self._path(name), self._path(copy))
        with self._path(copy).open("rb+") as handle:
            os.fsync(handle.fileno())
        return self.url(copy)

    def drop(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path(name)}{suffix}").unlink(missing_ok=True)
        (self.workdir / f"{name}.ready").unlink(missing_ok=True)

    def facts(self) -> dict[str, str]:
        return {"sqlite": sqlite3.sqlite_version, "database files": str(self.workdir)}


class PostgresBackend:
    """Databases on one server; a run's fresh copy is CREATE DATABASE … TEMPLATE."""

    name = "postgresql"
    READY = "bench-ready"

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.admin = create_engine(server_url, isolation_level="AUTOCOMMIT")

    def url(self, name: str) -> str:
        return make_url(self.server_url).set(database=name).render_as_string(
            hide_password=False)

    def _run(self, sql: str, **params: Any) -> Any:
        with self.admin.connect() as connection:
            result = connection.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None

    def is_prepared(self, name: str) -> bool:
        found = self._run("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                          "WHERE datname = :name", name=name)
        return bool(found == self.READY)

    def create(self, name: str) -> str:
        self.drop(name)
        self._run(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def seal(self, name: str) -> None:
        engine = create_engine(self.url(name), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:  # what autovacuum would have done by now
            connection.execute(text("VACUUM ANALYZE"))
        engine.dispose()
        self._run(f"COMMENT ON DATABASE \"{name}\" IS '{self.READY}'")

    def copy(self, name: str, copy: str) -> str:
        self.drop(copy)
        self._run(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
        return self.url(copy)

    def drop(self, name: str) -> None:
        self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def facts(self) -> dict[str, str]:
        version = str(self._run("SHOW server_version"))
        return {"postgresql": version, "server": make_url(self.server_url).render_as_string()}



def prepare(backend: Backend, plan: Plan, policy: Policy) -> float | None:
    """Build the prepared database once (kept in --workdir); seconds, None if reused."""
    name = plan.name()
    if backend.is_prepared(name):
        log(f"reusing prepared database {name}")
        return None
    log(f"building {plan.subscriptions:,} subscriptions ({name}) ...")
    started = time.perf_counter()
    engine = make_engine(backend.create(name))
    counts = build(engine, plan, policy)
    engine.dispose()
    backend.seal(name)
    seconds = time.perf_counter() - started
    log(f"  built in {seconds:.1f} s: {counts}")
    return seconds

