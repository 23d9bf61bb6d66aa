"""The mail commands of `renewal-worker`: `dkim keygen`, `bounces`, `suppressions`.

Parsing and printing only; what they do lives in worker.mail (keys, bounce reports,
suppressions) and worker.reports. Exit statuses as in worker.cli.

Imports: worker.cli (its exit statuses and BadInput), and what each command needs when
it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.app import App
from worker.cli import EXIT_OK, EXIT_PARTIAL, BadInput


def add_commands(commands: Any) -> dict[str, Callable[[argparse.Namespace, App], int]]:
    """The mail commands' parsers, added to `commands`; returns their handlers."""
    dkim = commands.add_parser("dkim", help="DKIM keys: dkim keygen DOMAIN SELECTOR")
    actions = dkim.add_subparsers(dest="dkim_action", metavar="ACTION", required=True)
    keygen = actions.add_parser("keygen", help="write a new private key for DOMAIN and "
                                "print the DNS TXT record to publish")
    keygen.add_argument("domain")
    keygen.add_argument("selector")
    keygen.add_argument("--out", type=Path, default=Path("var/dkim"),
                        help="folder of the key file (default var/dkim)")
    keygen.add_argument("--type", dest="key_type", choices=["rsa", "ed25519"], default="rsa",
                        help="rsa (2048 bits, the default: every receiver checks it) or "
                             "ed25519 (RFC 8463; publish an RSA key beside it)")
    bounces = commands.add_parser("bounces", help="read bounce reports (files, - for standard "
                                  "input, or --maildir DIR) and record them")
    bounces.add_argument("files", nargs="*", type=Path, metavar="FILE")
    bounces.add_argument("--maildir", type=Path, help="read the new messages of this Maildir "
                         "(each moved to cur/ once read)")
    listing = commands.add_parser("suppressions", help="the addresses no notice goes to; "
                                  "suppressions remove ADDRESS… lifts them")
    listing.add_argument("action", nargs="?", choices=["list", "remove"], default="list")
    listing.add_argument("addresses", nargs="*", metavar="ADDRESS")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    return {"dkim": _dkim, "bounces": _bounces, "suppressions": _suppressions}


def _dkim(args: argparse.Namespace, app: App) -> int:
    """`dkim keygen`: the key file is written (mode 0600, never over an existing one),
    the DNS record printed on stdout, the `[[dkim]]` table to add on stderr."""
    from pydantic import ValidationError

    from worker.config.mailing import DkimKeyPolicy
    from worker.errors import ConfigError
    from worker.mail.dkim import dns_record, generate, read_key

    domain, selector = args.domain.lower().rstrip("."), args.selector.lower()
    try:
        DkimKeyPolicy(domain=domain, selector=selector, key_file=Path("-"))
    except ValidationError as error:
        first = error.errors()[0]
        raise BadInput(f"dkim keygen: {first['loc'][0]}: "
                       f"{first['msg'].removeprefix('Value error, ')}") from None
    path = args.out / f"{domain}.{selector}.key"
    if path.exists():
        raise BadInput(f"dkim keygen: {path} exists; remove it or choose another selector")
    args.out.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(generate(args.key_type))
    try:
        key = read_key(path, domain, selector)
    except ConfigError as error:  # cannot happen with a key just made; say so if it does
        raise BadInput(str(error)) from None
    print(dns_record(key))
    print(f"key written to {path}; publish the record above, then add to WORKER_CONFIG:\n"
          f'  [[dkim]]\n  domain = "{domain}"\n  selector = "{selector}"\n'
          f'  key_file = "{path.resolve()}"', file=sys.stderr)
    return EXIT_OK


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _bounces(args: argparse.Namespace, app: App) -> int:
    """`bounces`: each report read, matched and recorded in its own transaction; what it
    matched on stdout; a source that is no bounce (or matched no notice) named on
    stderr, and exit 3."""
    from worker.mail.bounces.parse import NotABounce, read_report
    from worker.mail.bounces.record import record_report
    from worker.mail.bounces.sources import from_files, from_maildir

    if bool(args.files) == bool(args.maildir):
        raise BadInput("bounces: give report files (or - for standard input), or --maildir DIR")
    try:
        sources = (from_maildir(args.maildir) if args.maildir
                   else from_files(args.files, sys.stdin.buffer))
    except FileNotFoundError as error:
        raise BadInput(f"bounces: {error}") from None
    engine, domain = app.engine(), app.policy.mail.bounce_domain
    skipped = 0
    for source in sources:
        if source.data is None:
            print(f"{source.name}: {source.error}", file=sys.stderr)
            skipped += 1
            continue
        try:
            report = read_report(source.data, domain)
        except NotABounce as error:
            print(f"{source.name}: skipped: {error}", file=sys.stderr)
            skipped += 1
        else:
            with engine.begin() as connection:
                matched = record_report(connection, report, source=source.name,
                                        now=app.clock())
            for item in matched:
                print(f"{source.name}: {item.line()}")
            if any(item.outcome == "unmatched" for item in matched):
                print(f"{source.name}: matched no notice of this worker", file=sys.stderr)
                skipped += 1
        if source.done is not None:
            source.done()
    return EXIT_PARTIAL if skipped else EXIT_OK


def _suppressions(args: argparse.Namespace, app: App) -> int:
    """`suppressions [list | remove ADDRESS…]`: the addresses no notice goes to."""
    from worker.mail.suppressions import lift
    from worker.reports.suppressions import suppression_rows, suppressions_table

    engine = app.engine()
    if args.action == "remove":
        if not args.addresses:
            raise BadInput("suppressions remove: name at least one address")
        with engine.begin() as connection:
            lifted = lift(connection, args.addresses, by="suppressions remove",
                          now=app.clock())
        missing = sorted({a.lower() for a in args.addresses} - set(lifted))
        if args.format == "json":
            print(_json({"removed": lifted, "not_suppressed": missing}))
        for address in lifted:
            print(f"removed {address}", file=sys.stderr)
        for address in missing:
            print(f"{address} was not suppressed", file=sys.stderr)
        return EXIT_OK
    if args.addresses:
        raise BadInput("suppressions list takes no address")
    with engine.connect() as connection:
        rows = suppression_rows(connection)
    sys.stdout.write(_json(rows) + "\n" if args.format == "json" else suppressions_table(rows))
    return EXIT_OK
