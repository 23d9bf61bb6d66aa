"""Configuration, resolved once at the edge into frozen, validated objects.

* `settings`: the infrastructure (environment variables: DATABASE_URL, SMTP_URL,
  WEBHOOK_URL, HEALTH_PORT, …);
* `policy`: the business rules' numbers (config/policy.toml, overridden by WORKER_CONFIG);
* `checks`: what URLs and webhook secrets must look like;
* `bounds`: the domain of every outside value (the dates handled, timezones, locales,
  visible text), shared by the import, the command line and the policy;
* `endpoints`: the webhook endpoints both sources name.

Nothing below the command line reads `os.environ`: it is handed these objects.

Imports: worker.support, worker.errors (and pydantic, Babel, SQLAlchemy's URL parser).
Nothing else of the worker.
"""
