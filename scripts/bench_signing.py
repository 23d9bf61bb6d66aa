"""Benchmark: delivery with DKIM signing, and what one signature costs.

    python scripts/bench_signing.py            # CPU per message, RSA 2048 and Ed25519
    python scripts/bench_signing.py --json     # also delivery signing with each (make bench)
    python scripts/bench_signing.py --json --quick

With `--json`, scripts/bench_delivery.py runs once per key type with `--sign`: the outbox
signs at hand-over, plain aiosmtplib sends the same messages signed beforehand, over the
same connections (aim: 0.7 of the plain rate). This module also gives bench_delivery its
key, the policy that signs with it and the pre-signed bytes.

The benchmark's sample notices go From `ops@nuage.example` (worker.mail.samples), so the
key signs for nuage.example.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from worker.config.policy import Policy, build_policy
from worker.mail.compose import build_for, stamp_date
from worker.mail.dkim import Signer, generate
from worker.mail.samples import sample_row

DOMAIN = "nuage.example"
KeyType = Literal["rsa", "ed25519"]


def signing_policy(kind: KeyType, folder: Path) -> Policy:
    """The default policy with one `[[dkim]]` key of `kind` for the samples' domain."""
    path = folder / f"{DOMAIN}.{kind}.key"
    path.write_bytes(generate(kind))
    return build_policy({"dkim": [{"domain": DOMAIN, "selector": f"bench-{kind}",
                                   "key_file": str(path)}]})


def seal_all(signer: Signer, messages: list[tuple[str, list[str], bytes]]
             ) -> list[tuple[str, list[str], bytes]]:
    """The messages signed, as the outbox hands them over: what plain sends pre-signed."""
    return [(sender, recipients, signer.seal(data) or data)
            for sender, recipients, data in messages]


class _Row:
    def __init__(self, values: dict[str, object]) -> None:
        self._mapping = values


def cpu_per_message(kind: KeyType, count: int = 300) -> float:
    """Microseconds of CPU (this process) to sign one stamped message with a `kind` key."""
    with tempfile.TemporaryDirectory(prefix="bench-dkim-") as folder:
        signer = Signer.from_policy(signing_policy(kind, Path(folder)))
    row = {**sample_row("renewal_upcoming", "customer", "fr"), "id": 1, "message_id": None}
    data = stamp_date(build_for(_Row(row))[0], datetime.now(UTC))  # type: ignore[arg-type]
    signer.seal(data)  # warm up
    started = time.process_time()
    for _ in range(count):
        signer.seal(data)
    return (time.process_time() - started) / count * 1e6


def delivery_rows(key_type: KeyType, count: int) -> list[dict[str, object]]:
    """bench_delivery's rows with `--sign key_type`, the plain baseline's included."""
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_delivery.py")),
                           "--json", "--count", str(count), "--sign", key_type],
                          stdout=subprocess.PIPE, text=True, check=True)
    rows: list[dict[str, object]] = json.loads(done.stdout)["rows"]
    return [row for row in rows if "building" not in str(row["figure"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="2,000 notices, not 10,000")
    args = parser.parse_args()
    key_types: tuple[KeyType, ...] = ("rsa", "ed25519")
    if not args.json:
        for key_type in key_types:
            print(f"DKIM signing, {key_type}: {cpu_per_message(key_type):,.0f} µs of CPU "
                  "per message")
        return
    count = 2_000 if args.quick else 10_000
    rows = [row for key_type in key_types for row in delivery_rows(key_type, count)]
    print(json.dumps({"bench": "signing", "rows": rows}))


if __name__ == "__main__":
    main()
