"""Mail transports behind one small interface (`base.Mailer`): SMTP through aiosmtplib
(`smtp`), `.eml` files (`files`), and the in-memory twin that the tests use (`memory`);
`choice.open_mailer` picks one from the settings.

Import the module you need: this package's own import loads nothing, so the pure
decisions that only need `base` do not load aiosmtplib.
"""
