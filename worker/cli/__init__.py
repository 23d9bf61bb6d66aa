"""The `renewal-worker` command (also `python -m worker`): parse, dispatch, print.

This is the edge: it reads the environment once, resolves settings and policy into
frozen objects and hands them to `worker.app`, which wires what each command needs and
reads the clock. Exit status: 0 done, 2 bad input or configuration, 3 done but some
records could not be processed, 1 anything else. Machine-readable output goes to stdout
alone; logs and progress go to stderr. The README lists the commands; docs/rules.md
the rules they apply.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from worker.app import App
from worker.config.bounds import FIRST_DAY, LAST_DAY, MAX_FORECAST_DAYS, check_day, check_moment
from worker.config.policy import load_policy
from worker.config.settings import load_settings
from worker.errors import ConfigError, ImportRejected, one_line
from worker.support.stopping import SignalStop

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3
SEQ_MAX = 2**63 - 1  # event sequence numbers are BIGINT
MAX_IMPORT_MB = 256  # an import holds ~20 bytes of memory per byte of file: 5 GB at most
log = structlog.get_logger("worker.cli")


class BadInput(Exception):
    """A command-line value is wrong: exit 2 with this message."""


def _moment(text: str, option: str = "--as-of") -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"{option}: not an ISO 8601 moment: {text!r}") from None
    if value.tzinfo is None:
        raise BadInput(f"{option}: {text!r} has no offset (add Z or +HH:MM)")
    try:
        return check_moment(value.astimezone(UTC))
    except (ValueError, OverflowError):
        raise BadInput(f"{option}: {text!r} is outside the dates the worker handles "
                       f"({FIRST_DAY} to {LAST_DAY})") from None


def _count(text: str, option: str, minimum: int, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum] given on the command line, else BadInput."""
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{option}: not a whole number: {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise BadInput(f"{option}: {value} is out of range ({bounds})")
    return value


def _day(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--from: not a date (YYYY-MM-DD): {text!r}") from None
    try:
        return check_day(value)
    except ValueError as error:
        raise BadInput(f"--from: {error}") from None


def _megabytes(text: str) -> float:
    """--max-mb: a finite number above 0, at most MAX_IMPORT_MB."""
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"--max-mb: not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_IMPORT_MB):
        raise BadInput(f"--max-mb: {text} is out of range (above 0, at most {MAX_IMPORT_MB})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renewal-worker",
        description="Scheduled renewal and notification worker for software resellers. "
                    "The commands are described in the README, the rules in docs/rules.md.")
    parser.add_argument("--log-level", default="info", type=str.lower,
                        choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="create or migrate the schema")

    load = commands.add_parser("import", help="load or update records from a JSON file")
    load.add_argument("file", type=Path)
    load.add_argument("--dry-run", action="store_true",
                      help="write nothing; list record by record what the import would change "
                           "and what it would ignore, and why")
    load.add_argument("--json", action="store_true",
                      help="print the report (counts, changes, notes) as JSON on stdout")
    load.add_argument("--max-mb", default="16",
                      help=f"refuse a larger file before reading it (default 16, at most "
                           f"{MAX_IMPORT_MB})")

    run = commands.add_parser("run", help="one full pass")
    run.add_argument("--once", action="store_true", required=True)
    run.add_argument("--as-of", type=str, help="the pass's moment (ISO 8601 with offset)")
    run.add_argument("--dry-run", action="store_true", help="write and send nothing")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    commands.add_parser("start", help="the long-running service")

    export = commands.add_parser("export", help="the state as the last pass left it")
    export.add_argument("--format", choices=["json", "csv"], default="json")

    forecast = commands.add_parser("forecast", help="simulate one pass a day, change nothing")
    forecast.add_argument("--days", required=True, help=f"1 to {MAX_FORECAST_DAYS}")
    forecast.add_argument("--from", dest="first_day", type=str)
    forecast.add_argument("--format", choices=["table", "json", "csv"], default="table")

    preview = commands.add_parser("preview", help="render sample emails to .html and .eml")
    preview.add_argument("kind", nargs="?", help="one notification kind (default: all)")
    preview.add_argument("--locale", help="one locale, e.g. fr, en, fr_CA (default: fr and en)")
    preview.add_argument("--out", type=Path, default=Path("var/preview"), help="output folder")

    status = commands.add_parser("status", help="the dashboard as the last pass left it")
    status.add_argument("--format", choices=["table", "json"], default="table")

    commands.add_parser("check", help="exit 0 when the database answers and the newest "
                                      "pass is recent (the /healthz condition), else 1")

    history = commands.add_parser("history", help="one record's story: changes, notices, events")
    history.add_argument("ref", help="a subscription, customer, code or reseller id")
    history.add_argument("--format", choices=["table", "json"], default="table")

    events = commands.add_parser("events", help="the change feed, in order (or: events replay)")
    events.add_argument("--after", default="0", help="only events after this seq (default 0)")
    events.add_argument("--limit", default="100", help="at most this many (default 100)")
    events.add_argument("--format", choices=["table", "json"], default="table")
    actions = events.add_subparsers(dest="events_action", metavar="ACTION")
    replay = actions.add_parser("replay", help="push events again (same webhook-id)")
    replay.add_argument("seqs", nargs="*", metavar="SEQ", help="sequence numbers")
    replay.add_argument("--from", dest="start", help="events written from this moment")
    replay.add_argument("--to", dest="end", help="… up to (not including) this one")

    from worker.cli.mail import add_commands

    _COMMANDS.update(add_commands(commands))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from worker.support.logs import configure_logging

    configure_logging(level=args.log_level)
    try:
        _arm_crash_point(os.environ.get("WORKER_CRASH_AT"))
        settings = load_settings(os.environ)
        app = App(settings, load_policy(settings.worker_config))
        return _COMMANDS[args.command](args, app)
    except ConfigError as error:
        print(one_line(f"configuration error: {error}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except BadInput as error:
        print(one_line(f"error: {error}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportRejected as error:
        print(f"import refused, nothing was written ({len(error.errors)} error(s)):",
              file=sys.stderr)
        for line in error.errors:
            print(f"  {one_line(line)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as error:
        log.exception("command_failed", command=args.command)
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _arm_crash_point(spec: str | None) -> None:
    """WORKER_CRASH_AT: for the crash tests only (worker.support.crashpoints)."""
    if spec:
        from worker.support import crashpoints

        try:
            crashpoints.arm(spec)
        except ValueError as error:
            raise ConfigError("WORKER_CRASH_AT", str(error)) from None


def _db(args: argparse.Namespace, app: App) -> int:
    from worker.db.engine import current_revision, upgrade

    engine = app.engine(schema=False, create=True)
    upgrade(engine)
    print(f"schema at revision {current_revision(engine)} (newest)", file=sys.stderr)
    return EXIT_OK


def _import(args: argparse.Namespace, app: App) -> int:
    from worker.importing.load import import_file

    max_mb = _megabytes(args.max_mb)
    engine = app.engine()
    if not args.dry_run:
        app.register_webhooks(engine)
    report = import_file(engine, args.file, app.policy, dry_run=args.dry_run,
                         started_at=app.clock(), max_mb=max_mb)
    verb = "would import (nothing written)" if args.dry_run else "imported"
    print(f"{verb} {args.file}: {report}", file=sys.stderr)
    for warning in report.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    elif args.dry_run:
        print("\n".join(report.lines()))
    return EXIT_OK


def _run(args: argparse.Namespace, app: App) -> int:
    from worker.reports.summary import render_summary
    from worker.support.progress import terminal_progress

    moment = _moment(args.as_of) if args.as_of else app.clock()
    engine = app.engine()
    # SIGTERM/SIGINT: the pass stops after its chunk in hand (closed `interrupted`);
    # a second signal ends the process at once.
    stop = SignalStop().install()
    with terminal_progress() as progress:
        summary, pushed = app.run_once(engine, moment, dry_run=args.dry_run,
                                       progress=progress, stop=stop)
    if args.json:
        document = summary.as_json()
        if pushed is not None:
            document["webhooks"] = pushed.as_dict()
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_summary(summary))
        if pushed is not None and pushed.as_dict():
            print(f"  webhooks: {pushed}")
    if summary.interrupted:
        return EXIT_FAILED
    return EXIT_PARTIAL if summary.errors else EXIT_OK


def _start(args: argparse.Namespace, app: App) -> int:
    return app.start()


def _check(args: argparse.Namespace, app: App) -> int:
    """`/healthz`'s condition as an exit status and one line (platforms without probes)."""
    from worker.service.health import stale_after, verdict

    engine = app.engine(schema=False)
    try:
        judged = verdict(engine, app.clock(), stale_after(app.policy))
    finally:
        engine.dispose()
    print(f"{'ok' if judged.healthy else 'unhealthy'}: {judged.reason}")
    return EXIT_OK if judged.healthy else EXIT_FAILED


def _export(args: argparse.Namespace, app: App) -> int:
    from worker.reports.export import export_csv, export_state

    with app.engine().connect() as connection:
        state = export_state(connection)
    if args.format == "csv":
        sys.stdout.write(export_csv(state))
    else:
        print(json.dumps(state, indent=2, ensure_ascii=False))
    return EXIT_OK


def _forecast(args: argparse.Namespace, app: App) -> int:
    from worker.reports.forecast import forecast
    from worker.reports.summary import forecast_csv, forecast_json, forecast_table

    days = _count(args.days, "--days", 1, MAX_FORECAST_DAYS)
    zone = ZoneInfo(app.policy.schedule.timezone)
    first_day = _day(args.first_day) if args.first_day else app.clock().astimezone(zone).date()
    if first_day + timedelta(days=days - 1) > LAST_DAY:
        raise BadInput(f"--days: {days} days from {first_day} go past {LAST_DAY}, the last "
                       "date the worker handles")
    report = forecast(app.engine(), app.policy, first_day, days)
    render: dict[str, Callable[[list[dict[str, Any]]], str]] = {
        "json": lambda days: json.dumps(forecast_json(days), indent=2, ensure_ascii=False) + "\n",
        "csv": forecast_csv, "table": forecast_table,
    }
    sys.stdout.write(render[args.format](report))
    return EXIT_PARTIAL if any(day["errors"] for day in report) else EXIT_OK


def _status(args: argparse.Namespace, app: App) -> int:
    from worker.mail.senders import Senders
    from worker.reports.status import dashboard
    from worker.reports.summary import render_dashboard

    with app.engine().connect() as connection:
        board = dashboard(connection, Senders.from_policy(app.policy))
    if args.format == "json":
        print(json.dumps(board, indent=2))
    else:
        print(render_dashboard(board))
    return EXIT_OK


def _preview(args: argparse.Namespace, app: App) -> int:
    from worker.reports.preview import write_previews

    try:
        index = write_previews(args.out, args.kind, args.locale, app.policy)
    except ValueError as error:
        raise BadInput(str(error)) from None
    except OSError as error:
        raise BadInput(f"--out: cannot write under {args.out}: {error.strerror}") from None
    print(f"previews written; open {index}", file=sys.stderr)
    return EXIT_OK


def _history(args: argparse.Namespace, app: App) -> int:
    from worker.reports.history import UnknownRecord, history, history_table

    with app.engine().connect() as connection:
        try:
            story = history(connection, args.ref)
        except UnknownRecord as error:
            raise BadInput(f"history: {error}") from None
    if args.format == "json":
        print(json.dumps(story, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(history_table(story))
    return EXIT_OK


def _events(args: argparse.Namespace, app: App) -> int:
    from worker.cli.events import events_command

    return events_command(args, app)


_COMMANDS: dict[str, Callable[[argparse.Namespace, App], int]] = {
    "db": _db, "import": _import, "run": _run, "start": _start, "export": _export,
    "forecast": _forecast, "preview": _preview, "status": _status, "check": _check,
    "history": _history, "events": _events,
}
