"""Fuzzing the two doors: the import file and the command line.

A Hypothesis strategy takes the README's valid import document and mutates it: a value
replaced by another type, an extreme, a far date, odd unicode; a field dropped or added;
a record doubled or turned into something else. Whatever comes of it, `import` accepts
it (exit 0) or refuses it (exit 2), nothing else; accepted, the next pass runs clean
(exit 0, its mail delivered) and `export` still reads; refused, the database has not
moved. The command line's arguments get the same treatment: exit 0 or 2, never a
traceback.

The CI profile runs FUZZ_EXAMPLES examples of each (150 by default, about half a minute
here); `make fuzz` runs thousands.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from testkit.cli import migrated_sqlite
from tests.import_samples import full_document, run
from worker.app import App
from worker.cli import main
from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.db.engine import make_engine
from worker.db.schema import metadata
from worker.errors import ImportRejected
from worker.reports.export import export_state

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
AS_OF = datetime(2027, 2, 5, 10, tzinfo=UTC)


# --- the mutations ------------------------------------------------------------------

def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document: each object key and list index, at any depth."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from _paths(inner, (*prefix, index))


PATHS = sorted(_paths(full_document()), key=repr)
EXTREME_INTS = [0, -1, 1, 2, 3, 4, 5, 36, 37, 48, 49, 2**31 - 1, 2**31, 2**63, -(2**63), 10**20]
ODD_TEXT = ["", " ", "c1", "c1\u200b", "\ufeffc1", "c1\u200f", "\u3164", "\u202egnp.exe",
            "=?UTF-8?Q?=0A?=", "a\r\nBcc: x@evil.example", "\x00", "x" * 5000,
            "пол@dupont.example", "paul@dupönt.example", "Paul@Dupont.Example",
            "localtime", "Factory", "UTC", "Europe/Paris", "und", "root", "C", "en-ZZ",
            "en.UTF-8", "fr_CA", "zh-Hant-TW", "xx-YY", "ZZ", "commercial", "government",
            "pending", "accepted", "suspended", "updating"]
DAYS = st.dates().map(lambda day: f"{day.year:04d}-{day.month:02d}-{day.day:02d}")
MOMENTS = st.builds(lambda moment, zone: f"{moment.isoformat()}{zone}",
                    st.datetimes(), st.sampled_from(["Z", "+14:00", "-12:00", "+01:00", ""]))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EXTREME_INTS), st.integers(),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(ODD_TEXT), st.text(),
    DAYS, MOMENTS, st.sampled_from(["2027-02-29", "2027-13-01", "9999-12-31", "0001-01-01"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        document = document[step]
    return document


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The valid document with one to four mutations, each at a place it still has."""
    document: Any = full_document()
    for _ in range(draw(st.integers(1, 4))):
        places = list(_paths(document))
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent, last = _parent(document, path), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "double",
                                       "add"]))
        if action == "replace":
            parent[last] = draw(VALUES)
        elif action == "drop":
            del parent[last]
        elif action == "double" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif action == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.sampled_from(["extra", "status", "id", "licences"]))] = \
                draw(VALUES)
    return document  # type: ignore[no-any-return]


# --- the databases ------------------------------------------------------------------

def _dump(engine: Engine) -> dict[str, list[tuple[str, ...]]]:
    with engine.connect() as connection:
        return {table.name: sorted(tuple(map(str, row))
                                   for row in connection.execute(select(table)))
                for table in metadata.sorted_tables}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> dict[str, Path]:
    """Two SQLite files to copy per example: empty, and holding the valid document after
    a pass (a mutation is then a re-import)."""
    folder = tmp_path_factory.mktemp("fuzz")
    empty = folder / "empty.db"
    migrated_sqlite(folder, empty.name)
    loaded = folder / "loaded.db"
    engine = make_engine(migrated_sqlite(folder, loaded.name))
    run(engine, policy, full_document())
    App(Settings(database_url=f"sqlite:///{loaded}", mail_dir=folder / "mail"),
        policy).run_once(engine, AS_OF, dry_run=False, progress=None, stop=None)
    engine.dispose()
    return {"empty": empty, "loaded": loaded}


def _copy(template: Path, folder: Path) -> str:
    target = folder / f"{template.stem}-{os.urandom(4).hex()}.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@FUZZ
@given(document=mutated_documents(), start=st.sampled_from(["empty", "loaded"]))
def test_import_exits_0_or_2_and_either_way_the_worker_goes_on(
        document: dict[str, Any], start: str, templates: dict[str, Path], policy: Policy,
        tmp_path: Path) -> None:
    """Refused: nothing written. Accepted: the next pass is clean and export reads."""
    url = _copy(templates[start], tmp_path)
    engine = make_engine(url)
    try:
        before = _dump(engine)
        errors: list[str] | None = None
        try:
            run(engine, policy, json.dumps(document, ensure_ascii=False))
        except ImportRejected as refused:
            errors = refused.errors
        if errors is not None:
            assert errors
            assert all("\n" not in line for line in errors)
            assert before == _dump(engine)
            return
        app = App(Settings(database_url=url, mail_dir=tmp_path / "mail"), policy)
        summary, _pushed = app.run_once(engine, AS_OF, dry_run=False, progress=None,
                                        stop=None)
        assert [] == summary.errors
        assert "failed" not in summary.delivery
        with engine.connect() as connection:
            json.dumps(export_state(connection), default=str)
    finally:
        engine.dispose()


# --- the command line ---------------------------------------------------------------

ARG_TEXT = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "20", "100", "1000", "100000000", "nan", "inf",
                     "-inf", "1e13", "1e3", "0.5", "", " ", "9223372036854775807",
                     "9223372036854775808", "-9223372036854775809", "0x10", "１２"]),
    st.integers(-10, 20).map(str), DAYS, MOMENTS,
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            max_size=20),
)
COMMANDS = st.one_of(
    st.tuples(st.just("forecast"), st.just("--days"), ARG_TEXT.filter(
        lambda text: not text.strip().isdigit() or int(text) <= 20),
        st.just("--from"), ARG_TEXT),
    st.tuples(st.just("events"), st.just("--after"), ARG_TEXT, st.just("--limit"), ARG_TEXT),
    st.tuples(st.just("events"), st.just("replay"), ARG_TEXT),
    st.tuples(st.just("events"), st.just("replay"), st.just("--from"), ARG_TEXT,
              st.just("--to"), ARG_TEXT),
    st.tuples(st.just("run"), st.just("--once"), st.just("--dry-run"), st.just("--as-of"),
              ARG_TEXT),
    st.tuples(st.just("import"), st.just("valid.json"), st.just("--dry-run"),
              st.just("--max-mb"), ARG_TEXT),
    st.tuples(st.just("history"), ARG_TEXT),
)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@FUZZ
@given(args=COMMANDS)
def test_every_command_line_exits_0_or_2_without_a_traceback(
        args: tuple[str, ...], templates: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        logging_restored: None) -> None:
    """Any value of any option: done, or one line saying what is wrong."""
    (tmp_path / "valid.json").write_text(json.dumps(full_document()), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", _copy(templates["loaded"], tmp_path))
    monkeypatch.setenv("WORKER_MAIL_DIR", str(tmp_path / "mail"))
    for key in ("WORKER_CONFIG", "SMTP_URL", "WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code if isinstance(exit_.code, int) else 2
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err


SETTING_TEXT = st.one_of(
    st.sampled_from(["", " ", "0", "65536", "-1", "http://[::1", "https://[::1/x",
                     "smtp://[::1", "smtp://host:99999", "smtps://", "ftp://x", "whsec_",
                     "whsec_AAAA", "whsec_" + "A" * 44, "postgres://u@[::1/x", "sqlite://",
                     "https://example.com/hooks", "http://169.254.169.254/", "/dev/null",
                     "/dev/zero", "."]),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
            max_size=30),
)
SETTINGS = st.dictionaries(
    st.sampled_from(["SMTP_URL", "HEALTH_PORT", "HEALTH_HOST", "WEBHOOK_URL",
                     "WEBHOOK_SECRET", "WORKER_CONFIG", "DATABASE_URL"]),
    SETTING_TEXT, min_size=1, max_size=3)


@FUZZ
@given(environment=SETTINGS)
def test_every_setting_exits_0_or_2_without_a_traceback(
        environment: dict[str, str], templates: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        logging_restored: None) -> None:
    """Any value of any setting, read by `status`: done, or one line naming the key.
    (A PostgreSQL URL that parses is left out: it would wait for a server to answer.)"""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", _copy(templates["loaded"], tmp_path))
    for key in ("WORKER_CONFIG", "SMTP_URL", "WEBHOOK_URL", "WEBHOOK_SECRET", "HEALTH_PORT",
                "HEALTH_HOST"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        if key == "DATABASE_URL" and value.startswith("postgres") and "[" not in value:
            continue
        monkeypatch.setenv(key, value)
    code = main(["status"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert 1 == len(err.strip().splitlines()), err
