"""Small process-wide helpers every layer may use; none knows the domain.

* `stopping`: stop requests (an event, a callable, signals noted by a flag);
* `outage`: one log line when the database goes away, one when it is back;
* `crashpoints`: named points where the fault tests kill the process;
* `instruments`: this process's Prometheus counters and histograms;
* `logs`: structlog's configuration; `progress`: the progress bar on a terminal;
* `resources`: where the bundled config/ and templates/ folders are.

Imports: nothing of the worker.
"""
