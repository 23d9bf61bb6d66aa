"""Messages: the headers the README lists, both parts, and no header a value from data injects.

This file holds the suite's one rendering grid (every kind x audience x locale, with
realistic and with hostile data): each sample is rendered once and checked as text, as
HTML and as the message sent.

Every message is parsed back with Python's own parser: the header set must be exactly
the expected one (no Bcc, no Cc, nothing smuggled in through a name or a subject),
whatever the data.
"""

from __future__ import annotations

import copy
import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.mail.messages import (
    MAX_NAME,
    MAX_SUBJECT,
    UnsafeHeader,
    address,
    build_message,
    header_text,
    message_bytes,
    message_id_for,
)
from worker.mail.render import RenderedEmail, audiences_of, render_notification
from worker.mail.samples import HOSTILE_NAMES, hostile_row, sample_row
from worker.rules.notices import KINDS

MOMENT = datetime(2027, 3, 1, 8, 30, tzinfo=UTC)
HEADERS = {
    "From", "To", "Reply-To", "Subject", "Date", "Message-ID", "Auto-Submitted",
    "X-Auto-Response-Suppress", "X-Notification-Kind", "MIME-Version", "Content-Type",
    "Content-Language",
}
PAIRS = [(kind, audience) for kind in KINDS for audience in audiences_of(kind)]
INJECTIONS = (
    "Evil\r\nBcc: victim@evil.example",
    "Evil\nBcc: victim@evil.example",
    "Evil\rBcc: victim@evil.example",
    "=?UTF-8?Q?=0A?=Bcc: victim@evil.example",
    "=?utf-8?b?Cg==?=Bcc: victim@evil.example",
    "==??Q?=0A?=Bcc: victim@evil.example",
    "Evil\u2028Bcc: victim@evil.example",
    "Evil\x85Bcc: victim@evil.example",
    "Evil\x0bBcc:\x0cvictim@evil.example",
)


def _bytes(row: dict[str, Any], rendered: RenderedEmail | None = None) -> bytes:
    rendered = rendered or render_notification(row)
    message_id = message_id_for(row["id"], row["payload"]["reseller"]["email"])
    return message_bytes(row, rendered, message_id=message_id, date=MOMENT)


def _parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _raw_header(data: bytes, name: str) -> str:
    """A header as a mail client reads it: unfolded, RFC 2047 words decoded (where
    whitespace between two encoded words is dropped, as the RFC says)."""
    block = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    found = re.search(rf"^{name}:(.*?)(?=\r\n\S|\Z)", block, re.M | re.S)
    assert found is not None, name
    return str(make_header(decode_header(found[1].replace("\r\n", "")))).strip()


def _squeeze(text: str) -> str:
    """Python 3.11's parser puts a space between adjacent encoded words of a display
    name, which RFC 2047 says to drop: compare its names without their spaces."""
    return re.sub(r"\s", "", text)


def _check_message(row: dict[str, Any], data: bytes) -> EmailMessage:
    parsed = _parse(data)
    reseller = row["payload"]["reseller"]
    assert set(parsed.keys()) == HEADERS
    assert len(parsed.keys()) == len(HEADERS)  # no header twice
    assert [a.addr_spec for a in parsed["To"].addresses] == row["recipients"]
    assert [a.addr_spec for a in parsed["From"].addresses] == [reseller["email"]]
    assert [a.addr_spec for a in parsed["Reply-To"].addresses] == [
        reseller["reply_to"] or reseller["email"]]
    assert parsed["X-Notification-Kind"] == row["kind"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"] == message_id_for(row["id"], reseller["email"])
    assert parsed["Date"].datetime == MOMENT
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None
    assert plain.get_content().strip()
    assert html is not None
    assert "</html>" in html.get_content()
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):  # the header block
        assert re.match(rb"[A-Za-z-]+:( |$)|[ \t]", line), line
        assert len(line) <= 76 or b"=?" not in line, line  # RFC 2047
    sender = header_text(reseller.get("sender_name") or reseller["name"], MAX_NAME)
    expected = f"{sender} <{reseller['email']}>" if sender else reseller["email"]
    assert _raw_header(data, "From") == expected
    return parsed


# -- every kind x audience x locale, rendered once -------------------------------------
#
# The one grid of the suite: each sample is rendered once and checked as the text, the
# HTML and the message a mail client parses back.

LOCALES = ("fr", "en", "fr_CA", "de")
LANGUAGE = {"fr": "fr", "fr_CA": "fr", "en": "en", "de": "en"}
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029\u202a-\u202e]")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("kind", "audience"), PAIRS)
def test_realistic_sample_renders_in_the_recipient_language_with_the_contract_headers(
    kind: str, audience: str, locale: str
) -> None:
    """The language chosen (fr_CA -> fr, de -> en), the subject on one line, the reseller
    named in both bodies, the CSS inlined, the text wrapped at 72; exactly the contract's
    headers, both parts, the subject and sender as written."""
    row = sample_row(kind, audience, locale)
    rendered = render_notification(row)
    language = LANGUAGE[locale]
    assert rendered.language == language
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert "Nuage Conseil" in rendered.text
    assert "Nuage Conseil" in rendered.html
    assert f'<html lang="{language}"' in rendered.html
    assert "<style" not in rendered.html
    assert 'style="' in rendered.html
    assert all(len(line) <= 72 or " " not in line.strip() for line in rendered.text.splitlines())
    data = _bytes(row, rendered)
    parsed = _check_message(row, data)
    assert parsed["Subject"] == rendered.subject
    assert _raw_header(data, "Subject") == rendered.subject
    assert parsed["From"].addresses[0].display_name == "Nuage Conseil"
    assert parsed["Content-Language"] == language


@pytest.mark.parametrize("locale", ["fr", "en"])
@pytest.mark.parametrize(("kind", "audience"), PAIRS)
def test_hostile_names_are_escaped_flattened_and_inject_no_header(
    kind: str, audience: str, locale: str
) -> None:
    """Each hostile name in each place (tags, quotes, CR/LF, control characters, encoded
    words, bidi overrides, 300 characters): no markup in the HTML, no control character
    anywhere, a short one-line subject, and a message whose headers are exactly the
    contract's, with the neutralised subject and sender a mail client decodes."""
    for rotation in range(len(HOSTILE_NAMES)):
        row = hostile_row(kind, audience, locale, rotation)
        rendered = render_notification(row)
        lowered = rendered.html.lower()
        for markup in ("<script", "<img", "<b>", "</td></table>"):
            assert markup not in lowered, (rotation, markup)
        for part in (rendered.subject, rendered.text, rendered.html):
            assert not FORBIDDEN.search(part), rotation
        assert "\n" not in rendered.subject
        assert len(rendered.subject) < 250
        data = _bytes(row, rendered)
        parsed = _check_message(row, data)
        subject = header_text(rendered.subject, MAX_SUBJECT)
        assert parsed["Subject"] == subject
        assert _raw_header(data, "Subject") == subject
        sender = header_text(row["payload"]["reseller"]["sender_name"], MAX_NAME)
        assert _squeeze(parsed["From"].addresses[0].display_name) == _squeeze(sender)
        assert "victim@evil.example" not in {a.addr_spec for a in parsed["To"].addresses}


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("field", ["subject", "sender_name", "recipient_name", "reseller_name"])
def test_injection_attempts_are_neutralised(field: str, value: str) -> None:
    """Straight into the message layer, bypassing the renderer's own cleaning."""
    row = sample_row("payment_late", "customer", "en")
    rendered = render_notification(row)
    payload = row["payload"]
    if field == "subject":
        rendered = RenderedEmail(value, rendered.text, rendered.html, rendered.language)
    elif field == "recipient_name":
        payload["recipient_names"] = [value]
    else:
        payload["reseller"]["sender_name" if field == "sender_name" else "name"] = value
        payload["reseller"]["sender_name"] = value
    parsed = _check_message(row, _bytes(row, rendered))
    assert "Bcc" not in parsed
    assert "bcc" not in str(parsed["To"]).lower().split("<")[-1]
    for name in ("Subject", "From", "To"):
        assert "\n" not in str(parsed[name])
        assert "\r" not in str(parsed[name])


@pytest.mark.parametrize("bad", [
    "paul@dupont.example\r\nBcc: victim@evil.example",
    "paul@dupont.example\nBcc: victim@evil.example",
    "=?utf-8?q?paul?=@dupont.example",
    "paul@dupont.example, victim@evil.example",
    "Paul <paul@dupont.example>",
    "not an address",
    "paul@",
    "",
    "pàul@dupont.example",
])
def test_a_bad_address_is_refused_not_repaired(bad: str) -> None:
    row = sample_row("payment_late", "customer", "en")
    row["recipients"] = [bad]
    with pytest.raises(UnsafeHeader):
        _bytes(row)


def test_a_bad_reseller_address_is_refused() -> None:
    row = sample_row("payment_late", "customer", "en")
    row["payload"]["reseller"]["reply_to"] = "support@nuage.example\r\nBcc: x@evil.example"
    with pytest.raises(UnsafeHeader):
        _bytes(row)


def test_no_recipients_is_refused() -> None:
    row = sample_row("payment_late", "customer", "en")
    row["recipients"] = []
    with pytest.raises(UnsafeHeader):
        _bytes(row)


def test_an_unknown_kind_never_reaches_a_header() -> None:
    row = sample_row("payment_late", "customer", "en")
    rendered = render_notification(row)
    row["kind"] = "payment_late\r\nBcc: x@evil.example"
    with pytest.raises(UnsafeHeader):
        _bytes(row, rendered)


def test_an_international_domain_is_written_in_ascii() -> None:
    assert address("paul@bäckerei.example").domain == "xn--bckerei-5wa.example"


def test_names_are_capped_and_flattened() -> None:
    assert header_text("a\r\nb\tc  d", 80) == "a b c d"
    assert len(header_text("x" * 300, MAX_NAME)) == MAX_NAME
    assert "=?" not in header_text("==??=?=?", 80)
    assert header_text("\u202eevil", 80) == "evil"


# -- Message-ID and Date ---------------------------------------------------------------


def test_message_id_is_stable_per_notification() -> None:
    """A retry rebuilds the message with the same Message-ID."""
    first = message_id_for(42, "ops@nuage.example")
    assert first == message_id_for(42, "ops@nuage.example")
    assert first != message_id_for(43, "ops@nuage.example")
    assert first != message_id_for(42, "ops@nuage.example", salt="other-install")
    assert re.fullmatch(r"<notification-42\.[0-9a-f]{10}@nuage\.example>", first)


@pytest.mark.parametrize("reseller_email", [
    "ops@nuage.example",
    "ops@" + "very-long-subdomain-name." * 4 + "nuage.example",
    "ops@" + "x" * 63 + ".example",
    "ops@bäckerei.example",
])
@pytest.mark.parametrize("notification_id", [1, 2_147_483_647, "9f1c2b7e-5d"])
def test_message_id_is_short_enough_never_to_fold(
    reseller_email: str, notification_id: int | str
) -> None:
    row = sample_row("payment_late", "customer", "en")
    row["payload"]["reseller"]["email"] = reseller_email
    message_id = message_id_for(notification_id, reseller_email)
    rendered = render_notification(row)
    data = message_bytes(row, rendered, message_id=message_id, date=MOMENT)
    assert f"\r\nMessage-ID: {message_id}\r\n".encode() in data
    assert len(f"Message-ID: {message_id}") <= 78
    assert _parse(data)["Message-ID"] == message_id


@pytest.mark.parametrize("bad", ["", "a b", "1\r\n2", "x" * 41, "../1"])
def test_message_id_refuses_a_strange_notification_id(bad: str) -> None:
    with pytest.raises(ValueError, match="notification id"):
        message_id_for(bad, "ops@nuage.example")


def test_a_forged_message_id_is_refused() -> None:
    row = sample_row("payment_late", "customer", "en")
    with pytest.raises(UnsafeHeader):
        build_message(row, render_notification(row), message_id="<a@b>\r\nBcc: x@y",
                      date=MOMENT)


def test_date_needs_an_aware_moment_and_keeps_its_offset() -> None:
    row = sample_row("payment_late", "customer", "en")
    rendered = render_notification(row)
    with pytest.raises(ValueError, match="aware"):
        build_message(row, rendered, message_id="<a@b.example>",
                      date=datetime(2027, 3, 1, 8, 30))
    paris = datetime(2027, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    message = build_message(row, rendered, message_id="<a@b.example>", date=paris)
    assert message["Date"] == "Mon, 01 Mar 2027 09:30:00 +0100"


def test_without_a_date_the_message_has_no_date_header() -> None:
    """The outbox builds once and stamps the Date at each hand-over."""
    row = sample_row("payment_late", "customer", "en")
    message_id = message_id_for(7, "ops@nuage.example")
    data = message_bytes(row, render_notification(row), message_id=message_id, date=None)
    assert set(_parse(data).keys()) == HEADERS - {"Date"}


def test_text_comes_before_html_and_both_are_7bit_safe() -> None:
    """multipart/alternative lists the preferred part last; quoted-printable keeps
    the bytes ASCII so no server needs 8BITMIME."""
    row = sample_row("reseller_digest", "reseller", "fr")
    data = _bytes(row)
    assert data.isascii()
    parts = [part.get_content_type() for part in _parse(data).iter_parts()]
    assert parts == ["text/plain", "text/html"]


# -- any value at all ------------------------------------------------------------------

ODD_CHARS = st.text(st.sampled_from(list(
    "ab Z09-'«»’\"<>,;:@\\()[].=?\r\n\t\x00\x85\u2028\u202e\u00a0\u202fشمی"
)), max_size=8)
FRENCH_WORDS = st.sampled_from([
    "Société", "d’Électricité", "Générale", "–", "Œuvres", "Çà", "été", "TBox", "licences",
    "arrive", "à", "échéance", "le", "15", "mars", "2027", "Pâtisserie", "Lefèvre", "Fils",
])
HEADER_TEXT = st.lists(st.one_of(FRENCH_WORDS, ODD_CHARS), max_size=24).map(" ".join)
ROW = sample_row("payment_late", "customer", "en")


@settings(max_examples=300, deadline=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT, recipient_name=HEADER_TEXT)
def test_any_subject_or_name_reaches_the_reader_intact_and_injects_nothing(
    subject: str, name: str, recipient_name: str
) -> None:
    """Whatever the characters, the header set is unchanged and a mail client decodes
    exactly the neutralised value: no space lost, none added. Oracle: Python's own
    parser and RFC 2047 decoder on the bytes. Catches: a CR/LF or encoded word let
    through (a new header), a fold that drops or adds a space, a name cut mid-character."""
    row = copy.deepcopy(ROW)
    row["payload"]["reseller"]["sender_name"] = name
    row["payload"]["recipient_names"] = [recipient_name]
    rendered = RenderedEmail(subject, "Hello\n", "<html></html>", "en")
    data = _bytes(row, rendered)
    _check_message(row, data)
    assert _raw_header(data, "Subject") == header_text(subject, MAX_SUBJECT)
    display = header_text(recipient_name, MAX_NAME)
    email_address = row["recipients"][0]
    assert _raw_header(data, "To") == (f"{display} <{email_address}>" if display
                                       else email_address)
