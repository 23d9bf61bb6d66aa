#!/usr/bin/env bash
# `make demo`: one pass of the worker over a demo portfolio, on a fresh SQLite database,
# with emails written as .eml files under var/demo/mail instead of being sent.
set -euo pipefail

venv=${VENV:-.venv}
as_of=${DEMO_DATE:-$(date -u +%F)}
# At 10:00 UTC every demo customer is on the local date $as_of (scripts/demo_data.py).
moment="${as_of}T10:00:00Z"
demo=var/demo

export DATABASE_URL="sqlite:///$demo/worker.db"
export WORKER_MAIL_DIR="$demo/mail"
unset SMTP_URL

step() { printf '\n==> %s\n' "$*" >&2; }

step "fresh demo database and mail folder in $demo/"
rm -rf "$demo/worker.db" "$demo/mail"
mkdir -p "$demo"

step "demo portfolio as of $as_of"
"$venv/bin/python" scripts/demo_data.py --as-of "$as_of" --out "$demo/portfolio.json"

worker="$venv/bin/renewal-worker"
step "renewal-worker db upgrade"
"$worker" db upgrade
step "renewal-worker import $demo/portfolio.json"
"$worker" import "$demo/portfolio.json"
step "renewal-worker run --once --as-of $moment"
"$worker" run --once --as-of "$moment"
step "renewal-worker status"
"$worker" status

step "emails written to $WORKER_MAIL_DIR"
if [ -d "$WORKER_MAIL_DIR" ]; then
  find "$WORKER_MAIL_DIR" -name '*.eml' | sort | head -n 40
  printf '%s message(s); open one with any mail client, or: less %s/<file>.eml\n' \
    "$(find "$WORKER_MAIL_DIR" -name '*.eml' | wc -l)" "$WORKER_MAIL_DIR" >&2
else
  echo "(none: nothing was due inside its send window at $moment)" >&2
fi
