"""Scheduled renewal and notification worker for software resellers.

The packages, from the top down (each imports only those below it; pyproject.toml's
import-linter contracts say so and the tests check it): `cli`, `app`, `service`,
`reports`, `passes` and `importing`, `mail` and `webhooks`, `events`, `drain`, `db`,
`rules`, `config`, and `support` with `errors` at the bottom. The README's "Design"
section maps them; docs/rules.md states the rules.
"""

__version__ = "0.1.0"
