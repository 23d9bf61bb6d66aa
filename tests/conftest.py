"""Shared fixtures: a fresh database on SQLite (a real file) and on a real PostgreSQL.

PostgreSQL tests need the server binaries (Debian's `postgresql` package). Locally they
skip, saying why, when those are missing; under CI (CI=true) a missing server fails.

Hypothesis profiles: "ci" when CI=true (derandomized, so a red build is reproducible
and never depends on luck; no deadline, since two loaded cores make timings meaningless;
statistics printed after the run), "dev" otherwise (random, a new search each run, a
generous deadline). `HYPOTHESIS_PROFILE=name` or `--hypothesis-profile=name` chooses
another (`make mutate` uses "ci": a mutant must be killed the same way every time).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, create_engine, text

from testkit.postgres import PostgresUnavailable, running_server
from worker.config.policy import Policy, load_policy
from worker.db.engine import make_engine, upgrade
from worker.support.outage import OUTAGES

_counter = itertools.count()

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=timedelta(seconds=2))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    """Under CI, print Hypothesis's statistics (examples, time, stop reason) per test."""
    if os.environ.get("CI"):
        config.option.hypothesis_show_statistics = True


def pytest_report_header() -> str:
    profile = settings.default
    assert profile is not None
    return (f"hypothesis profile {settings.get_current_profile_name()!r}: "
            f"derandomize={profile.derandomize}, deadline={profile.deadline}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    try:
        with running_server() as url:
            yield url
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {error}")
        pytest.skip(f"PostgreSQL tests skipped locally: {error}")


@pytest.fixture(scope="session")
def postgres_template(postgres_server: str) -> str:
    """A migrated database that every PostgreSQL test copies (CREATE DATABASE … TEMPLATE)."""
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE worker_template"))
    admin.dispose()
    url = postgres_server.rsplit("/", 1)[0] + "/worker_template"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def _fresh_postgres(server: str, template: str | None) -> str:
    name = f"worker_test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        suffix = " TEMPLATE worker_template" if template else ""
        connection.execute(text(f"CREATE DATABASE {name}{suffix}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database (no schema) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'worker.db'}"
    server = request.getfixturevalue("postgres_server")
    return _fresh_postgres(server, None)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new database with the schema migrated, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'worker.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    server = request.getfixturevalue("postgres_server")
    request.getfixturevalue("postgres_template")
    return _fresh_postgres(server, "worker_template")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_server: str, postgres_template: str) -> Iterator[Engine]:
    """A new migrated database on the real PostgreSQL only (locks, deadlocks)."""
    engine = make_engine(_fresh_postgres(postgres_server, postgres_template))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(autouse=True)
def _no_outage_left_over() -> None:
    """The process's outage log starts each test with the database up."""
    OUTAGES.reset()


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file only, for tests that need no PostgreSQL twin."""
    engine = make_engine(f"sqlite:///{tmp_path / 'worker.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()
