"""The composition root: what each command is made of, wired once.

`cli` parses the command line and prints; everything a command needs beyond that is
built here from the frozen settings and policy and the one clock (`App.clock`, the only
place the wall clock is read): the engine and its schema, the mail transport, the two
queues the drain serves (mail, then the portal's webhooks), the pass, the service's
jobs and its health endpoint.

Each command imports what it needs when it runs, so `--help` stays fast.

Imports: every package below it (worker.service and down).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine

from worker.config.policy import Policy
from worker.config.settings import Settings
from worker.errors import ConfigError
from worker.support.stopping import Stop

if TYPE_CHECKING:
    from worker.mail.dkim import Signer
    from worker.mail.drain import DeliveryCounts
    from worker.passes.run import Progress
    from worker.passes.summary import PassSummary
    from worker.webhooks.push import PushCounts, ReplayOutcome

log = structlog.get_logger("worker.app")


def utc_now() -> datetime:
    """The wall clock, in UTC: read here and nowhere else."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Drained:
    """What one turn of the drain did: mail first, then the portal's events."""

    mail: DeliveryCounts
    webhooks: PushCounts | None  # None: stopped before the events' turn


@dataclass(frozen=True)
class App:
    settings: Settings
    policy: Policy
    clock: Callable[[], datetime] = utc_now

    # --- the database ---------------------------------------------------------------

    def engine(self, *, schema: bool = True, create: bool = False) -> Engine:
        """The engine of DATABASE_URL, its schema brought up to date unless told not to.
        A SQLite file that does not exist is a ConfigError unless `create` (`db upgrade`)."""
        from worker.config.settings import check_database_exists
        from worker.db.engine import ensure_schema, make_engine

        if not create:
            check_database_exists(self.settings)
        engine = make_engine(self.settings.database_url)
        if schema:
            ensure_schema(engine)
        return engine

    def register_webhooks(self, engine: Engine) -> None:
        """Endpoints take the events written from their first configured command on."""
        from worker.webhooks.push import register_endpoints

        register_endpoints(engine, self.settings, self.policy, self.clock())

    @cached_property
    def signer(self) -> Signer:
        """The DKIM keys of `[[dkim]]`, read once: a missing, unreadable or weak key is a
        ConfigError naming its domain (exit 2), raised before anything is sent."""
        from worker.mail.dkim import Signer

        return Signer.from_policy(self.policy)

    # --- the queues the drain serves ------------------------------------------------

    def deliver_mail(self, engine: Engine, moment: datetime, stop: Stop = None
                     ) -> DeliveryCounts:
        """Every notice due at `moment`, through SMTP_URL or `.eml` files."""
        from worker.mail.drain import deliver_due

        return deliver_due(engine, self.policy, self.settings, moment, clock=self.clock,
                           stop=stop, signer=self.signer)

    def push_webhooks(self, engine: Engine, moment: datetime, stop: Stop = None
                      ) -> PushCounts:
        """Every event delivery due at `moment` (no endpoint configured: nothing)."""
        from worker.webhooks.push import push_due

        return push_due(engine, self.settings, self.policy, moment, clock=self.clock,
                        stop=stop)

    def drain(self, engine: Engine, moment: datetime, stop: Stop = None) -> Drained:
        """One turn of both queues: the mail, then, unless stopped, the portal's events
        (which then include the mail's own `notification.*` events)."""
        from worker.support.stopping import requested

        mail = self.deliver_mail(engine, moment, stop)
        pushed = None if requested(stop) else self.push_webhooks(engine, moment, stop)
        return Drained(mail, pushed)

    # --- commands -------------------------------------------------------------------

    def run_once(self, engine: Engine, moment: datetime, *, dry_run: bool,
                 progress: Progress | None, stop: Stop) -> tuple[PassSummary, PushCounts | None]:
        """`run --once`: one pass at `moment` with its drain of the mail, then the push
        of the events (not after a dry run, nor after a pass that was stopped)."""
        from worker.config.settings import check_mail_dir
        from worker.passes.run import run_pass

        if not dry_run:
            _ = self.signer  # a bad key stops the command before the pass
            check_mail_dir(self.settings)
            self.register_webhooks(engine)
        summary = run_pass(engine, self.policy, moment, dry_run=dry_run, clock=self.clock,
                           progress=progress, stop=stop,
                           deliver=lambda at: self.deliver_mail(engine, at, stop))
        if dry_run or summary.interrupted:
            return summary, None
        return summary, self.push_webhooks(engine, moment, stop)

    def replay(self, engine: Engine, rows: Sequence[Any]) -> ReplayOutcome:
        """`events replay`: the selected events queued again and pushed now."""
        from worker.webhooks.push import replay

        now = self.clock()
        return replay(engine, rows, settings=self.settings, policy=self.policy, now=now,
                      clock=self.clock)

    def start(self) -> int:
        """`start`: the health endpoint, then the scheduled passes and drains until a
        signal (worker.service.scheduler says how they are run and stopped)."""
        from worker.config.endpoints import configured_endpoints
        from worker.config.settings import check_mail_dir
        from worker.service.health import serve_health, stale_after
        from worker.service.scheduler import serve

        _ = self.signer  # a bad DKIM key: exit 2 now, naming its domain
        check_mail_dir(self.settings)
        engine = self.engine(schema=False)  # the schema waits for the database to answer
        stop = threading.Event()
        endpoint = None
        if self.settings.health_port is not None:
            try:
                endpoint = serve_health(engine, self.settings.health_host,
                                        self.settings.health_port, self.clock,
                                        stale_after(self.policy), stop.is_set)
            except OSError as error:
                raise ConfigError("HEALTH_HOST/HEALTH_PORT", f"cannot listen on "
                                  f"{self.settings.health_host}:{self.settings.health_port}: "
                                  f"{error.strerror or error}") from None
        configured_endpoints(self.settings, self.policy)  # bad webhook settings: exit 2 now
        try:
            return serve(self.policy, self._jobs(engine), self.clock, stop)
        finally:
            if endpoint is not None:
                endpoint.shutdown()

    def _jobs(self, engine: Engine) -> Any:
        from worker.db.engine import ensure_schema
        from worker.passes.ledger import close_failed
        from worker.passes.run import run_pass
        from worker.service.scheduler import Jobs

        def prepare() -> None:
            """Before the first pass, once the database answers."""
            ensure_schema(engine)
            self.register_webhooks(engine)

        def one_pass(stop: threading.Event) -> object:
            return run_pass(engine, self.policy, self.clock(), trigger="schedule",
                            clock=self.clock, stop=stop,
                            deliver=lambda at: self.deliver_mail(engine, at, stop))

        def one_drain(stop: threading.Event) -> None:
            drained = self.drain(engine, self.clock(), stop)
            if drained.webhooks is not None and drained.webhooks.as_dict():
                log.info("push_finished", **drained.webhooks.as_dict())

        def probe() -> None:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")

        return Jobs(run_pass=one_pass, deliver=one_drain, probe=probe, prepare=prepare,
                    close_failed=lambda pass_id, error: close_failed(engine, pass_id, error,
                                                                     self.clock()))
