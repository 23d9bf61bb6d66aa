"""Read models: what the commands (and later the console) show, read from what passes
stored; nothing is recomputed from the clock.

* `status`: the dashboard's aggregates; `summary`: a pass, a forecast, the dashboard
  as text, JSON and CSV;
* `export`: the state as the last pass left it;
* `forecast`: passes simulated day by day on a scratch copy, nothing changed;
* `history`: one record's story (changes, notices, events, deliveries);
* `preview`: sample emails written to files.

Imports: worker.passes, worker.importing, worker.mail, worker.webhooks and below.
"""
