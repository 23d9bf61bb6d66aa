"""Pure rules: one module per family. Each takes a snapshot, the moment (or the local
date) and the policy, and returns decisions; nothing here reads the clock or the
database (docs/rules.md states the rules in words).

* `calendar`: anchored months, local dates and midnights;
* `model`, `notices`: the decisions (Change, Notice) and the kinds/audiences table;
* `subscriptions`, `payments`, `codes`, `invitations`, `digest`: the families.

Imports: worker.config, worker.errors.
"""
