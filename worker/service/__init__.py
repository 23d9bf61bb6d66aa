"""The long-running service: APScheduler 3 wiring, signals and the shutdown bound, the
health endpoint and the metrics.

* `scheduler`: passes and drains on an interval, outages waited out, stop honoured;
* `health`: /livez, /readyz, /healthz and /metrics, and `check`;
* `metrics`: the Prometheus exposition (this process's instruments, the database's
  gauges).

Imports: worker.reports, worker.passes and below; `worker.app` wires it.
"""
