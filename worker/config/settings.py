"""Infrastructure settings, read once from the environment at the program's edge.

Business policy (days, thresholds) lives apart, in `worker.config.policy`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from worker.config.checks import check_secret, check_url
from worker.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///var/worker.db"
SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")


class Settings(BaseModel):
    """What the environment says: DATABASE_URL, SMTP_URL, HEALTH_HOST/PORT, WORKER_CONFIG,
    WEBHOOK_URL and WEBHOOK_SECRET."""

    model_config = ConfigDict(frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    worker_config: Path | None = None
    mail_dir: Path = Path("var/mail")
    webhook_url: str | None = None
    webhook_secret: str | None = None

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in SMTP_SCHEMES:
            raise ValueError(
                f"unknown scheme {parts.scheme!r} (expected one of {', '.join(SMTP_SCHEMES)})"
            )
        if not parts.hostname:
            raise ValueError("no host name")
        try:
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("bad port") from None
        return value

    @field_validator("health_host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.strip() or any(ch.isspace() or ch in "/[]" for ch in value.strip()):
            raise ValueError(f"not an address or host name: {value!r}")
        return value.strip()

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return check_url(value) if value else None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        """One secret, or two separated by a space while the portal rotates them."""
        if not value or not value.strip():
            return None
        secrets = value.split()
        if len(secrets) > 2:
            raise ValueError("at most two secrets (the new and the old, during a rotation)")
        for secret in secrets:
            check_secret(secret)
        return " ".join(secrets)

    @field_validator("health_port")
    @classmethod
    def _port(cls, value: int | None) -> int | None:
        if value is not None and not 0 < value < 65536:
            raise ValueError("must be a port number between 1 and 65535")
        return value


def normalise_database_url(value: str) -> str:
    """Accept sqlite and PostgreSQL URLs; `postgres://` becomes `postgresql+psycopg://`.
    A URL that SQLAlchemy or the URL parser cannot read (`postgres://u@[::1/x`, a port
    out of range) is refused here rather than when the first command connects."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(f"not a URL: {value!r}")
    driver = scheme.split("+", 1)[0]
    if driver in ("postgres", "postgresql"):
        if scheme in ("postgres", "postgresql"):
            scheme = "postgresql+psycopg"
        value = f"{scheme}://{rest}"
    elif driver != "sqlite":
        raise ValueError(f"unknown scheme {scheme!r} (expected sqlite:// or postgresql://)")
    try:
        make_url(value)
        urlsplit(value).port  # noqa: B018 - parsing the port is the check
    except (ArgumentError, ValueError) as error:
        raise ValueError(f"malformed URL ({str(error).splitlines()[0]})") from None
    return value


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for another backend or an in-memory database)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") \
            or str(url.database).startswith("file:"):
        return None
    return Path(str(url.database))


_ENV_KEYS = {
    "DATABASE_URL": "database_url",
    "SMTP_URL": "smtp_url",
    "SMTP_USERNAME": "smtp_username",
    "SMTP_PASSWORD": "smtp_password",
    "HEALTH_PORT": "health_port",
    "HEALTH_HOST": "health_host",
    "WORKER_CONFIG": "worker_config",
    "WORKER_MAIL_DIR": "mail_dir",
    "WEBHOOK_URL": "webhook_url",
    "WEBHOOK_SECRET": "webhook_secret",
}


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from an environment mapping; a wrong value raises ConfigError naming it."""
    values = {field: environ[name] for name, field in _ENV_KEYS.items() if environ.get(name)}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0])
        env_name = next(name for name, key in _ENV_KEYS.items() if key == field)
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(env_name, message) from None
    if settings.webhook_url and not settings.webhook_secret:
        raise ConfigError("WEBHOOK_SECRET", "required with WEBHOOK_URL (whsec_ followed by base64)")
    return settings


def check_mail_dir(settings: Settings) -> None:
    """Without SMTP_URL every message is a file under WORKER_MAIL_DIR: the folder must
    exist (it is created when missing) and take a file, checked before anything is
    queued, so that a typo (`/dev/null/mail`) stops the command instead of every notice
    retrying until it is dead."""
    if settings.smtp_url is not None:
        return
    folder = settings.mail_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        raise ConfigError("WORKER_MAIL_DIR", f"cannot write messages under {folder}: "
                                             f"{error.strerror or error}") from None


def check_database_exists(settings: Settings) -> None:
    """A SQLite file must exist for every command but `db upgrade`: a mistyped path
    would otherwise become a new, empty database that every command reads as nothing."""
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():
        missing = "folder" if not path.parent.is_dir() else "file"
        raise ConfigError("DATABASE_URL", f"no SQLite database at {path} (the {missing} does "
                                          "not exist; create it with `renewal-worker db "
                                          "upgrade`)")
