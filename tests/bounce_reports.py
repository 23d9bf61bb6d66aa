"""Bounce reports as real servers write them, around the message that bounced.

Each writer takes the message as sent (its bytes, envelope sender and the recipient that
failed) and returns the report that server would send back to the envelope sender:
Postfix and Gmail and Microsoft 365 (RFC 3464 `multipart/report`, each with its own
wording and extra parts), Exim (its classic plain-text form with `X-Failed-Recipients`).
`mangled` garbles the recipient fields, as some gateways do.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes

BOUNDARY = "B0UNDARY.1741600800/mx.relay.example"


@dataclass(frozen=True)
class Bounced:
    data: bytes  # the message as sent
    sender: str  # its envelope sender: where the report goes
    recipient: str
    status: str = "5.1.1"
    reply: str = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"

    @property
    def headers(self) -> str:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        return head.replace("\r\n", "\n")

    @property
    def message_id(self) -> str:
        return str(message_from_bytes(self.data)["Message-ID"])

    @property
    def diagnostic(self) -> str:
        return self.reply.format(rcpt=self.recipient)


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def postfix(b: Bounced, *, delayed: bool = False) -> bytes:
    action = "delayed" if delayed else "failed"
    subject = ("Delayed Mail (still being retried)" if delayed
               else "Undelivered Mail Returned to Sender")
    return _crlf(f"""Return-Path: <>
Delivered-To: {b.sender}
Date: Wed, 10 Mar 2027 10:00:05 +0000 (UTC)
From: MAILER-DAEMON@mx.relay.example (Mail Delivery System)
Subject: {subject}
To: {b.sender}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{BOUNDARY}"
Message-Id: <20270310100005.4F2A1C0123@mx.relay.example>

This is a MIME-encapsulated message.

--{BOUNDARY}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.relay.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<{b.recipient}>: host mx.dupont.example[203.0.113.5] said: {b.diagnostic}
    (in reply to RCPT TO command)

--{BOUNDARY}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.relay.example
X-Postfix-Queue-ID: 4F2A1C0123
X-Postfix-Sender: rfc822; {b.sender}
Arrival-Date: Wed, 10 Mar 2027 10:00:02 +0000 (UTC)

Final-Recipient: rfc822; {b.recipient}
Original-Recipient: rfc822;{b.recipient}
Action: {action}
Status: {b.status}
Remote-MTA: dns; mx.dupont.example
Diagnostic-Code: smtp; {b.diagnostic}

--{BOUNDARY}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{b.sender}>
{b.headers}

--{BOUNDARY}--
""")


def exim(b: Bounced) -> bytes:
    return _crlf(f"""Return-path: <>
Envelope-to: {b.sender}
From: Mail Delivery System <Mailer-Daemon@mx.exim.example>
To: {b.sender}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1tXyZ-0004Kd-2b@mx.exim.example>
Date: Wed, 10 Mar 2027 10:00:05 +0000
X-Failed-Recipients: {b.recipient}
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {b.recipient}
    host mx.dupont.example [203.0.113.5]
    SMTP error from remote mail server after RCPT TO:<{b.recipient}>:
    {b.diagnostic}

------ This is a copy of the message's headers. ------

Return-path: <{b.sender}>
{b.headers}
""")


def microsoft(b: Bounced) -> bytes:
    reply = (f"550 {b.status} RESOLVER.ADR.RecipientNotFound; "
             "Recipient not found by SMTP address lookup")
    return _crlf(f"""From: Microsoft Outlook
	<MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@dupont.onmicrosoft.com>
To: <{b.sender}>
Date: Wed, 10 Mar 2027 10:00:06 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="{BOUNDARY}"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <c2a1e0f4-ndr@DB9PR08MB6123.eurprd08.prod.outlook.com>
In-Reply-To: {b.message_id}
References: {b.message_id}
Subject: Undeliverable: your subscription
Auto-Submitted: auto-replied
MIME-Version: 1.0

--{BOUNDARY}
Content-Type: text/plain; charset="us-ascii"

Your message to {b.recipient} couldn't be delivered.
paul wasn't found at dupont.example.

Diagnostic information for administrators:

Generating server: DB9PR08MB6123.eurprd08.prod.outlook.com

{b.recipient}
Remote server returned '{reply}'

--{BOUNDARY}
Content-Type: message/delivery-status

Reporting-MTA: dns;DB9PR08MB6123.eurprd08.prod.outlook.com
Received-From-MTA: dns;mx.relay.example
Arrival-Date: Wed, 10 Mar 2027 10:00:04 +0000

Final-Recipient: rfc822;{b.recipient}
Action: failed
Status: {b.status}
Diagnostic-Code: smtp;{reply}

--{BOUNDARY}
Content-Type: message/rfc822

{b.headers}

(body omitted)

--{BOUNDARY}--
""")


def gmail(b: Bounced) -> bytes:
    return _crlf(f"""Delivered-To: {b.sender}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {b.sender}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: {b.message_id}
In-Reply-To: {b.message_id}
X-Failed-Recipients: {b.recipient}
Message-ID: <65e2b1a0.ABC123.gmail@mx.google.com>
Date: Wed, 10 Mar 2027 02:00:06 -0800 (PST)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000b7d1f0062f0a0000";
	report-type=delivery-status

--000000000000b7d1f0062f0a0000
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {b.recipient} because the address couldn't be found, or is
unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

--000000000000b7d1f0062f0a0000
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mx.relay.example
Arrival-Date: Wed, 10 Mar 2027 02:00:05 -0800 (PST)
X-Original-Message-ID: {b.message_id}

Final-Recipient: rfc822; {b.recipient}
Action: failed
Status: {b.status}
Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.27.26, the server for the domain
 dupont.example.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not
 exist. Please try double-checking the recipient's email address for typos or
 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser
Last-Attempt-Date: Wed, 10 Mar 2027 02:00:06 -0800 (PST)

--000000000000b7d1f0062f0a0000
Content-Type: message/rfc822

{b.headers}

(body omitted)

--000000000000b7d1f0062f0a0000--
""")


def mangled(b: Bounced) -> bytes:
    """A gateway's report whose recipient fields were rewritten beyond use."""
    report = postfix(b).decode()
    report = report.replace(f"Final-Recipient: rfc822; {b.recipient}",
                            "Final-Recipient: rfc822; <unknown>")
    report = report.replace(f"Original-Recipient: rfc822;{b.recipient}\r\n", "")
    report = report.replace(f"<{b.recipient}>: host", "<unknown>: host")
    return report.replace(b.recipient, "recipient@[redacted]").encode()


def vacation(b: Bounced) -> bytes:
    """An auto-reply sent to the envelope sender: no bounce at all."""
    return _crlf(f"""From: Paul Dupont <{b.recipient}>
To: {b.sender}
Subject: Out of office
Auto-Submitted: auto-replied
Message-ID: <ooo-1@dupont.example>

I am away until Monday.
""")


FORMS = {"postfix": postfix, "exim": exim, "microsoft": microsoft, "gmail": gmail}
