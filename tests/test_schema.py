"""The schema migrates on both backends and keeps timestamps timezone-aware."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, insert, select

from worker.db.engine import current_revision, ensure_schema, head_revision, make_engine
from worker.db.schema import PASSES


def test_upgrade_reaches_head_and_is_idempotent(empty_database_url: str) -> None:
    """`db upgrade` creates the schema once and a second run changes nothing."""
    engine = make_engine(empty_database_url)
    ensure_schema(engine)
    ensure_schema(engine)
    assert head_revision() == current_revision(engine)
    engine.dispose()


def test_timestamps_come_back_aware_in_utc(engine: Engine) -> None:
    """08:00+01:00 is stored as 07:00 UTC and read back with its offset, on both backends."""
    moment = datetime(2027, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    with engine.begin() as connection:
        connection.execute(
            insert(PASSES).values(
                started_at=moment, as_of=moment, trigger="once", counts={}, errors=[],
                dry_run=False, outcome="done",
            )
        )
        stored = connection.execute(select(PASSES.c.as_of)).scalar_one()
    assert stored == moment
    assert stored.utcoffset() == timedelta(0)


def test_migrations_match_the_tables(empty_database_url: str) -> None:
    """The migrations build exactly the tables `worker/db/schema.py` declares: a column or an
    index added to one and not the other is named here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from worker.db.schema import metadata

    engine = make_engine(empty_database_url)
    ensure_schema(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert [] == differences
