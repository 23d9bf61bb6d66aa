"""Mailers: SMTP (aiosmtplib), `.eml` files, and the in-memory twin for tests."""

from __future__ import annotations

from dataclasses import replace

from worker.mailer.base import (
    DeliveryFailure,
    Mailer,
    Outcome,
    Outgoing,
    PermanentFailure,
    Reply,
    Stage,
    TransientFailure,
    Verdict,
    classify,
)
from worker.mailer.files import FileMailer
from worker.mailer.memory import MemoryMailer, Script
from worker.mailer.smtp import SmtpConfig, SmtpMailer
from worker.settings import Settings

__all__ = [
    "DeliveryFailure", "FileMailer", "Mailer", "MemoryMailer", "Outcome", "Outgoing",
    "PermanentFailure", "Reply", "Script", "SmtpConfig", "SmtpMailer", "Stage",
    "TransientFailure", "Verdict", "classify", "open_mailer",
]


def open_mailer(settings: Settings, connections: int = 4) -> Mailer:
    """SMTP when SMTP_URL is set (at most `connections` at once), `.eml` files under
    `settings.mail_dir` otherwise."""
    if settings.smtp_url is None:
        return FileMailer(settings.mail_dir)
    config = SmtpConfig.from_url(settings.smtp_url, settings.smtp_username,
                                 settings.smtp_password)
    return SmtpMailer(replace(config, pool_size=connections))
