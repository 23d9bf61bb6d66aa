"""Bounce reports: read what comes back, match it to a notice and a recipient, record it.

* `parse`: a report's bytes -> its failures (flufl.bounce beside the standard `email`
  package for RFC 3464's per-recipient Status and Diagnostic-Code), the envelope senders
  of ours it was addressed to, and the Message-IDs it quotes. Pure.
* `record`: one report in one transaction: each failure matched (by envelope token,
  else by Message-ID), kept once per (report, recipient), and for a permanent one the
  recipient marked `bounced`, a `notification.bounced` event, the address suppressed.
* `sources`: the reports of files, a Maildir or standard input.

Imports: worker.mail.senders, worker.mail.suppressions, worker.events, worker.db.
"""
