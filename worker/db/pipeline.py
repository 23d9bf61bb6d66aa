"""Statements sent to PostgreSQL in one pipeline (psycopg), errors wrapped as SQLAlchemy's.

Imports: SQLAlchemy only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@contextlib.contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """On PostgreSQL (psycopg), the statements of the block in one pipeline: sent
    together, answered together, instead of a round trip each (a third of the time of
    recording a few outcomes, measured on a local server). Only for statements whose
    rows nobody reads: a result read inside a pipeline hung the transaction.

    An error the server reports for a statement of the pipeline surfaces when the
    pipeline ends, outside SQLAlchemy: it is wrapped here as SQLAlchemy would have done
    (a deadlock, `OperationalError`), so that callers tell an outage, a conflict and a
    bug apart as for any other statement (worker.db.failures)."""
    driver = connection.connection.driver_connection
    pipeline = getattr(driver, "pipeline", None)
    if connection.dialect.name != "postgresql" or pipeline is None:
        yield
        return
    module = connection.dialect.loaded_dbapi
    try:
        with pipeline():
            yield
    except module.Error as error:
        raise DBAPIError.instance(None, None, error, module.Error,
                                  dialect=connection.dialect) from error
