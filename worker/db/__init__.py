"""The database: engine and schema, migrations, and the ways of talking to it that every
queue and pass shares.

* `engine`: engines for SQLite and PostgreSQL, `db upgrade` (Alembic, `migrations/`);
* `schema`, `types`: the tables (SQLAlchemy 2.0), UTC instants on both backends;
* `failures`: an outage, a conflict (deadlock) or a refusal, told apart; the backoff;
* `runner`: transactions that wait out an outage and retry a conflict;
* `leases`: the leases of queued rows, and the hold that ends a poison pill;
* `pipeline`: statements sent to PostgreSQL in one round trip.

Imports: worker.support, worker.errors. Never a feature package.
"""
