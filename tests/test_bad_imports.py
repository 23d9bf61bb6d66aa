"""Broken and hostile import files (tests/data/bad/): each refused with its path, nothing
written, memory bounded.

Every file of the manifest goes through the import's entry point on a real database of
each backend that already holds other records; a representative subset also goes
through the real command, whose start-up would otherwise dominate. The database is
dumped before and after: rows and values must not move.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from testkit.cli import run_cli
from tests.import_samples import (
    code,
    customer,
    full_document,
    purchase_authorization,
    reseller,
    run,
    stored,
    subscription,
)
from worker.config.policy import Policy
from worker.db.engine import make_engine, upgrade
from worker.db.schema import metadata
from worker.errors import ImportRejected
from worker.importing.load import MAX_FILE_MB, import_file

BAD = Path(__file__).parent / "data" / "bad"
MANIFEST: list[dict[str, Any]] = json.loads((BAD / "MANIFEST.json").read_text())["files"]
THROUGH_THE_COMMAND = [entry for entry in MANIFEST if entry["cli"]]
PEAK_RSS_BOUND_MB = 400


def entry_id(entry: dict[str, Any]) -> str:
    return str(entry["file"]).removesuffix(".json")


def other_records() -> dict[str, Any]:
    """Records under other ids than the bad files use, so that "nothing written" is
    judged on tables that hold something."""
    return {
        "resellers": [reseller(id="r0", email="ops@zero.example")],
        "customers": [customer(id="c0", reseller_id="r0")],
        "subscriptions": [subscription(id="s0", customer_id="c0")],
        "purchase_authorizations": [purchase_authorization(id="pa0", customer_id="c0")],
        "reseller_change_codes": [code(id="k0", customer_id="c0", reseller_id="r0")],
    }


def dump(engine: Engine) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, in a stable order."""
    with engine.connect() as connection:
        return {
            table.name: sorted(tuple(map(str, row)) for row in connection.execute(select(table)))
            for table in metadata.sorted_tables
        }


def seed(url: str, policy: Policy) -> tuple[str, Engine, dict[str, Any]]:
    engine = make_engine(url)
    upgrade(engine)
    run(engine, policy, other_records())
    return url, engine, dump(engine)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres",
                                                               marks=pytest.mark.postgres)])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           policy: Policy) -> Iterator[tuple[str, Engine, dict[str, Any]]]:
    """A migrated database holding `other_records()`, its URL, and its dump."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bad') / 'worker.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"worker_bad_{os.getpid()}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = server.rsplit("/", 1)[0] + "/" + name
    url, engine, before = seed(url, policy)
    yield url, engine, before
    engine.dispose()


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory,
                  policy: Policy) -> Iterator[tuple[str, Engine, dict[str, Any]]]:
    """The same on SQLite alone, for the command's runs."""
    url, engine, before = seed(f"sqlite:///{tmp_path_factory.mktemp('cli') / 'worker.db'}",
                               policy)
    yield url, engine, before
    engine.dispose()


def test_the_manifest_names_every_file_and_at_least_fifty() -> None:
    """A file without an expectation would test nothing."""
    files = {path.name for path in BAD.iterdir()} - {"MANIFEST.json"}
    assert files == {entry["file"] for entry in MANIFEST}
    assert len(MANIFEST) >= 50


@pytest.mark.parametrize("entry", MANIFEST, ids=entry_id)
def test_each_bad_file_is_refused_with_its_path_and_nothing_written(
        entry: dict[str, Any], seeded: tuple[str, Engine, dict[str, Any]],
        policy: Policy) -> None:
    """The operator reads where the file is wrong; the database is as it was."""
    _url, engine, before = seeded
    with pytest.raises(ImportRejected) as refusal:
        import_file(engine, BAD / entry["file"], policy, started_at=datetime.now(UTC))
    assert any(line.startswith(entry["error"]) for line in refusal.value.errors), (
        refusal.value.errors)
    assert all(len(line) < 1000 for line in refusal.value.errors)
    assert dump(engine) == before


@pytest.mark.parametrize("entry", THROUGH_THE_COMMAND, ids=entry_id)
def test_bad_files_through_the_command_exit_2_with_the_path(
        entry: dict[str, Any], seeded_sqlite: tuple[str, Engine, dict[str, Any]],
        tmp_path: Path) -> None:
    """Exit status 2, one line per error naming its path, no traceback."""
    url, engine, before = seeded_sqlite
    result = run_cli("import", str(BAD / entry["file"]), database_url=url, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "import refused, nothing was written" in result.stderr
    assert f"  {entry['error']}" in result.stderr
    assert "Traceback" not in result.stderr
    assert dump(engine) == before


def write_portfolio(path: Path, megabytes: float, *, last: dict[str, Any]) -> int:
    """A file of about `megabytes` MB: the README's example with many subscriptions,
    `last` at the end. Returns the index of `last` in `subscriptions`."""
    document = full_document()
    head = json.dumps({key: value for key, value in document.items()
                       if key != "subscriptions"})
    template = json.dumps(subscription(id="s@", product="TBox @")) + ",\n"
    count = int(megabytes * 1_000_000 - len(head)) // (len(template) + 4)
    with path.open("w", encoding="utf-8") as out:
        out.write(head[:-1] + ', "subscriptions": [\n')
        out.writelines(template.replace("@", str(index)) for index in range(count))
        out.write(json.dumps(last) + "]}\n")
    return count


# The command run as `python -m worker` (the console script's entry point), printing its
# own peak RSS (VmHWM) last. Not `ru_maxrss` from wait4: Linux carries that across exec,
# so the child would report the test process's size at the fork.
_WITH_PEAK = """
import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("peak-rss-kb", line.split()[1], file=sys.stderr)
atexit.register(peak)
sys.argv = ["renewal-worker", *sys.argv[1:]]
runpy.run_module("worker", run_name="__main__")
"""


def run_measured(path: Path, url: str, cwd: Path) -> tuple[int, str, float]:
    """Exit status, standard error and peak RSS (MB) of `renewal-worker import path`."""
    environ = dict(os.environ, DATABASE_URL=url)
    done = subprocess.run([sys.executable, "-c", _WITH_PEAK, "import", str(path)],
                          env=environ, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)
    last = done.stderr.strip().splitlines()[-1].split()
    assert last[0] == "peak-rss-kb", done.stderr
    return done.returncode, done.stderr, int(last[1]) / 1024


@pytest.fixture
def sqlite_seeded(tmp_path: Path, policy: Policy) -> Iterator[tuple[str, Engine]]:
    url, engine, _before = seed(f"sqlite:///{tmp_path / 'worker.db'}", policy)
    yield url, engine
    engine.dispose()


def test_a_50_mb_file_is_refused_before_it_is_read(sqlite_seeded: tuple[str, Engine],
                                                   tmp_path: Path) -> None:
    """All or nothing holds every record in memory: a file above the limit is refused
    unread, so memory stays bounded whatever the file's size."""
    url, engine = sqlite_seeded
    before = dump(engine)
    path = tmp_path / "portfolio.json"
    write_portfolio(path, 50, last=subscription(id="last"))
    assert path.stat().st_size >= 50_000_000
    code_, stderr, peak_mb = run_measured(path, url, tmp_path)
    assert code_ == 2, stderr
    assert f"  file: larger than the import limit of {MAX_FILE_MB} MB" in stderr
    assert peak_mb < PEAK_RSS_BOUND_MB
    assert dump(engine) == before


def test_a_file_just_under_the_limit_is_judged_whole_in_bounded_memory(
        sqlite_seeded: tuple[str, Engine], tmp_path: Path) -> None:
    """The worst file the limit lets in: every record read, the last one wrong."""
    url, engine = sqlite_seeded
    before = dump(engine)
    path = tmp_path / "portfolio.json"
    index = write_portfolio(path, MAX_FILE_MB * 0.98,
                            last=subscription(id="last", start_date="2027-02-30"))
    code_, stderr, peak_mb = run_measured(path, url, tmp_path)
    assert code_ == 2, stderr
    assert f"  subscriptions[{index}].start_date: impossible date '2027-02-30'" in stderr
    assert peak_mb < PEAK_RSS_BOUND_MB
    assert dump(engine) == before


def test_a_utf8_byte_order_mark_is_skipped_and_the_file_imports(engine: Engine,
                                                                policy: Policy,
                                                                tmp_path: Path) -> None:
    """Some editors write a UTF-8 BOM; it carries no meaning, so it is accepted."""
    path = tmp_path / "portfolio.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(full_document(), ensure_ascii=False)
                     .encode("utf-8"))
    import_file(engine, path, policy, started_at=datetime.now(UTC))
    assert stored(engine, "resellers", "r1")["account_managers"][0]["name"] == "Léa Martin"
    assert stored(engine, "customers", "c1")["name"] == "Boulangerie Dupont"


def test_sql_looking_strings_are_stored_verbatim(engine: Engine, policy: Policy) -> None:
    """Values are bound parameters, never SQL: they come back as they went in."""
    customer_id = "c1';DROP/**/TABLE/**/customers;--"
    name = "Robert'); DROP TABLE customers; --"
    document = {"resellers": [reseller(name="x\" OR \"1\"=\"1")],
                "customers": [customer(id=customer_id, name=name)],
                "subscriptions": [subscription(customer_id=customer_id,
                                               product="1; DELETE FROM subscriptions")]}
    run(engine, policy, document)
    assert stored(engine, "customers", customer_id)["name"] == name
    assert stored(engine, "resellers", "r1")["name"] == "x\" OR \"1\"=\"1"
    assert stored(engine, "subscriptions", "s1")["product"] == "1; DELETE FROM subscriptions"


def test_the_size_limit_is_the_operators_to_set(seeded_sqlite: tuple[str, Engine, dict[str, Any]],
                                                tmp_path: Path) -> None:
    """`--max-mb` moves the limit: a machine with more memory may take larger files."""
    url, engine, before = seeded_sqlite
    path = tmp_path / "portfolio.json"
    path.write_text(json.dumps(full_document()), encoding="utf-8")
    result = run_cli("import", str(path), "--max-mb", "0.001", database_url=url, cwd=tmp_path)
    assert result.code == 2, result.stderr
    assert "  file: larger than the import limit of 0.001 MB" in result.stderr
    assert dump(engine) == before
