"""The transport a process uses: SMTP when SMTP_URL is set, `.eml` files otherwise.

Imports: worker.config, and the transports beside it.
"""

from __future__ import annotations

from dataclasses import replace

from worker.config.settings import Settings
from worker.mail.transports.base import Mailer
from worker.mail.transports.files import FileMailer
from worker.mail.transports.smtp import SmtpConfig, SmtpMailer


def open_mailer(settings: Settings, connections: int = 4) -> Mailer:
    """SMTP when SMTP_URL is set (at most `connections` at once), `.eml` files under
    `settings.mail_dir` otherwise."""
    if settings.smtp_url is None:
        return FileMailer(settings.mail_dir)
    config = SmtpConfig.from_url(settings.smtp_url, settings.smtp_username,
                                 settings.smtp_password)
    return SmtpMailer(replace(config, pool_size=connections))
