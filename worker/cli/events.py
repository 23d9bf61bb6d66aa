"""The `events` command of `renewal-worker`: the change feed, and `events replay`.

Parsing and printing only; the feed is worker.events.feed, the replay worker.app's.
Exit statuses and argument checks as in worker.cli.

Imports: worker.cli (its exit statuses, BadInput and argument checks), and what each
command needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from worker.app import App
from worker.cli import EXIT_OK, SEQ_MAX, BadInput, _count, _moment


def events_command(args: argparse.Namespace, app: App) -> int:
    """`events`: the change feed, a page at a time; `events replay`: push events again."""
    from worker.events.feed import MAX_LIMIT, events_after, feed_page, feed_table

    if args.events_action == "replay":
        return _replay(args, app)
    after = _count(args.after, "--after", 0, SEQ_MAX)
    limit = _count(args.limit, "--limit", 1, MAX_LIMIT)
    with app.engine().connect() as connection:
        if args.format == "json":
            print(json.dumps(feed_page(connection, after, limit), indent=2, ensure_ascii=False))
        else:
            sys.stdout.write(feed_table(events_after(connection, after, limit)))
    return EXIT_OK


def _replay(args: argparse.Namespace, app: App) -> int:
    """`events replay`: select the events (bad input: exit 2), then queue them again to
    every configured endpoint under the same webhook-id and push them at once (no
    endpoint configured: ConfigError, exit 2, nothing pushed)."""
    from worker.events.feed import events_between, events_by_seq

    seqs, window = _replay_selection(args)
    engine = app.engine()
    with engine.connect() as connection:
        if window is None:
            rows, missing = events_by_seq(connection, seqs)
            if missing:
                raise BadInput(f"events replay: no event has seq {', '.join(map(str, missing))}")
        else:
            rows = events_between(connection, *window)
    if not rows:
        print("events replay: no event in that period; nothing to replay", file=sys.stderr)
        return EXIT_OK
    print(f"events replay: {app.replay(engine, rows)}", file=sys.stderr)
    return EXIT_OK


def _replay_selection(
    args: argparse.Namespace,
) -> tuple[list[int], tuple[datetime, datetime] | None]:
    """Either sequence numbers or a period [--from, --to), never both, never neither."""
    if args.seqs and (args.start or args.end):
        raise BadInput("events replay: give sequence numbers or --from/--to, not both")
    if args.seqs:
        return [_count(text, "events replay: SEQ", 1, SEQ_MAX) for text in args.seqs], None
    if not (args.start and args.end):
        raise BadInput("events replay: give sequence numbers, or both --from T and --to T")
    start, end = _moment(args.start, "--from"), _moment(args.end, "--to")
    if start >= end:
        raise BadInput("events replay: --from must come before --to")
    return [], (start, end)
