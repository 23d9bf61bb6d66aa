"""Rendering notifications: templates, wording, escaping, undefined values.

Templates must exist for every pair of AUDIENCES in French and English, render in the
recipient's language (fr_CA -> fr, de -> en), write dates in words and counts for the
locale, escape every value in HTML and never leave a variable blank. The grid of every
kind x audience x locale, with realistic and with hostile data, is rendered once, in
test_messages.py, and checked there as text, as HTML and as the message sent.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from worker.mail.render import (
    PARTS,
    RenderedEmail,
    RenderError,
    audiences_of,
    clean_text,
    environment,
    french_spacing,
    locale_chain,
    render_notification,
    template_name,
    tidy_text,
)
from worker.mail.samples import sample_row
from worker.rules.notices import KINDS
from worker.support.resources import resource_dir

TEMPLATES = resource_dir("templates") / "email"
PAIRS = [(kind, audience) for kind in KINDS for audience in audiences_of(kind)]
NNBSP = "\u202f"


def _render(row: dict[str, Any]) -> RenderedEmail:
    return render_notification(row)


# -- the template set ------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
@pytest.mark.parametrize(("kind", "audience"), PAIRS)
def test_every_pair_has_subject_text_and_html(kind: str, audience: str, language: str) -> None:
    """Each kind goes to each of its audiences with a subject, a text and an HTML."""
    missing = [part for part in PARTS
               if not (TEMPLATES / template_name(language, kind, audience, part)).is_file()]
    assert missing == []


def test_no_template_for_a_pair_that_never_occurs() -> None:
    """A template nobody can receive is dead wording: none may exist."""
    expected = {template_name(lang, k, a, part)
                for lang in ("fr", "en") for k, a in PAIRS for part in PARTS}
    found = {str(path.relative_to(TEMPLATES)) for path in TEMPLATES.glob("*/*/*.*.j2")
             if path.name.split(".")[0] in ("customer", "reseller")}
    assert found - expected == set()


def test_html_templates_are_autoescaped_and_others_are_not() -> None:
    """select_autoescape would miss `.html.j2`: the environment must not."""
    env = environment()
    assert env.autoescape("fr/grace_ending/customer.html.j2")  # type: ignore[operator]
    assert not env.autoescape("fr/grace_ending/customer.txt.j2")  # type: ignore[operator]


# -- realistic data --------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "expected"), [
    ("fr", "15 mars 2027"), ("fr_CA", "15 mars 2027"), ("en", "15 March 2027"),
    ("de", "15 March 2027"), ("en_US", "March 15, 2027"), ("en_GB", "15 March 2027"),
])
def test_dates_are_written_in_words_for_the_locale(locale: str, expected: str) -> None:
    """« 15 mars 2027 », "15 March 2027"; an American reader gets his own order."""
    rendered = _render(sample_row("renewal_upcoming", "customer", locale))
    for part in (rendered.subject, rendered.text, rendered.html):
        assert expected in part
    assert "2027-03-15" not in rendered.text + rendered.html


def test_french_writes_the_first_of_the_month_as_1er() -> None:
    rendered = _render(sample_row("reseller_digest", "reseller", "fr"))
    assert "1er mars 2027" in rendered.subject


@pytest.mark.parametrize(("locale", "expected"), [
    ("fr", f"1{NNBSP}250"), ("en", "1,250"), ("fr_CA", "1\u00a0250"),
])
def test_counts_are_formatted_for_the_locale(locale: str, expected: str) -> None:
    """Babel's French groups thousands with a narrow no-break space (Canada: a full one)."""
    row = sample_row("renewal_upcoming", "customer", locale)
    row["payload"]["subscription"]["licences"] = 1250
    assert expected in _render(row).text


@pytest.mark.parametrize(("locale", "zone", "expected"), [
    ("fr", "Europe/Paris", "1er mars 2027 à 15:30"),
    ("fr_CA", "America/Toronto", "1er mars 2027 à 09 h 30"),
    ("en", "Europe/London", f"1 March 2027 at 2:30{NNBSP}pm"),
])
def test_code_expiry_is_shown_to_the_minute_in_the_recipient_timezone(
    locale: str, zone: str, expected: str
) -> None:
    row = sample_row("reseller_code_expiring", "customer", locale)
    row["timezone"] = zone
    assert expected in _render(row).text.replace("\n", " ")


@pytest.mark.parametrize(("auto_renew", "expected"), [
    (True, "Il est en renouvellement automatique"),
    (False, "Il ne se renouvelle pas automatiquement"),
])
def test_renewal_notices_say_whether_auto_renew_applies(auto_renew: bool, expected: str) -> None:
    row = sample_row("renewal_upcoming", "customer", "fr")
    row["payload"]["subscription"]["auto_renew"] = auto_renew
    rendered = _render(row)
    assert expected in rendered.text
    assert expected in rendered.html


def test_expiry_notice_names_the_lapse_day() -> None:
    """docs/rules.md: subscription_expired names the lapse day, AD + 14."""
    rendered = _render(sample_row("subscription_expired", "customer", "fr"))
    assert "29 mars 2027" in rendered.subject
    assert "29 mars 2027" in rendered.text


@pytest.mark.parametrize(("locale", "title", "more"), [
    ("fr", "15 abonnements à renouveler", "et 12 autres"),
    ("en", "15 subscriptions to renew", "and 12 more"),
])
def test_digest_lists_groups_with_counts_and_the_rest(locale: str, title: str, more: str) -> None:
    rendered = _render(sample_row("reseller_digest", "reseller", locale))
    for part in (rendered.text, rendered.html):
        assert title in part
        assert more in part
    assert "Cabinet Moreau Avocats" in rendered.text


def test_french_uses_french_typography() -> None:
    """No-break space before the colon, guillemets' spaces, the typographic apostrophe."""
    rendered = _render(sample_row("renewal_upcoming", "customer", "fr"))
    assert "Échéance\u00a0: 15 mars 2027" in rendered.text
    assert " :" not in rendered.text
    assert "l’utiliser" in rendered.text


# -- hostile data ----------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["fr", "en"])
def test_markup_in_a_name_is_shown_as_text(locale: str) -> None:
    """Escaped in HTML (once, not twice), as typed in the text part."""
    row = sample_row("payment_late", "customer", locale)
    row["payload"]["customer"]["name"] = '<script>alert("x")</script> & Fils'
    rendered = _render(row)
    assert "&lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; Fils" in rendered.html
    assert "&amp;lt;" not in rendered.html
    assert '<script>alert("x")</script> & Fils' in rendered.text


def test_right_to_left_names_are_isolated() -> None:
    """An Arabic name cannot reorder the sentence around it (FSI … PDI)."""
    row = sample_row("renewal_upcoming", "customer", "fr")
    row["payload"]["subscription"]["product"] = "شركة النور"
    rendered = _render(row)
    assert "\u2068شركة النور\u2069" in rendered.text
    assert "\u2068شركة النور\u2069" in rendered.subject


# -- undefined is an error -------------------------------------------------------------


def _used_facts(kind: str, audience: str) -> list[str]:
    sources = " ".join((TEMPLATES / template_name(lang, kind, audience, part)).read_text()
                       for lang in ("fr", "en") for part in PARTS)
    facts = sample_row(kind, audience)["payload"]["facts"]
    return [key for key in facts if f"facts.{key}" in sources]


FACT_GRID = [pytest.param(k, a, fact, id=f"{k}.{a}-{fact}")
             for k, a in PAIRS for fact in _used_facts(k, a)]


@pytest.mark.parametrize(("kind", "audience", "fact"), FACT_GRID)
@pytest.mark.parametrize("locale", ["fr", "en"])
def test_a_missing_fact_is_an_error_never_a_blank(
    kind: str, audience: str, fact: str, locale: str
) -> None:
    row = sample_row(kind, audience, locale)
    del row["payload"]["facts"][fact]
    with pytest.raises(RenderError, match=fact):
        _render(row)


def test_every_kind_uses_its_facts() -> None:
    """The table above is not empty by accident: all but one kind read facts."""
    kinds = {kind for kind, _ in PAIRS if _used_facts(kind, audiences_of(kind)[0])}
    assert set(KINDS) - kinds == {"subscription_started"}


@pytest.mark.parametrize(("kind", "audience"), PAIRS)
def test_a_missing_context_is_an_error(kind: str, audience: str) -> None:
    row = sample_row(kind, audience)
    missing = "customer" if "customer" in row["payload"] else "reseller"
    broken = copy.deepcopy(row)
    del broken["payload"][missing]
    with pytest.raises(RenderError):
        _render(broken)


def test_a_missing_subscription_field_is_an_error() -> None:
    row = sample_row("renewal_upcoming", "customer")
    del row["payload"]["subscription"]["auto_renew"]
    with pytest.raises(RenderError, match="auto_renew"):
        _render(row)


@pytest.mark.parametrize(("kind", "audience"), [
    ("subscription_started", "reseller"), ("reseller_digest", "customer"),
    ("no_such_kind", "customer"), ("../../etc/passwd", "customer"),
])
def test_a_pair_that_never_occurs_is_refused(kind: str, audience: str) -> None:
    row = sample_row("subscription_started", "customer")
    row |= {"kind": kind, "audience": audience}
    with pytest.raises(RenderError):
        _render(row)


def test_an_unknown_timezone_is_an_error() -> None:
    row = sample_row("reseller_code_expiring", "customer")
    row["timezone"] = "Europe/Pariss"
    with pytest.raises(RenderError, match="Pariss"):
        _render(row)


# -- the helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "chain"), [
    ("fr_CA", ("fr_CA", "fr", "en")), ("fr-CA", ("fr_CA", "fr", "en")), ("fr", ("fr", "en")),
    ("de", ("de", "en")), ("en_US", ("en_US", "en")), ("xx_YY", ("en",)), ("", ("en",)),
])
def test_locale_chain(locale: str, chain: tuple[str, ...]) -> None:
    assert chain == locale_chain(locale)


@pytest.mark.parametrize(("raw", "clean"), [
    ("Evil\r\nBcc: x@evil.example", "Evil Bcc: x@evil.example"),
    ("a\x00b\x1b[31mc", "a b [31mc"),
    ("  many   spaces\t\there ", "many spaces here"),
    ("abc\u202edef\u202c", "abcdef"),
    ("line\u2028sep\u0085nel", "line sep nel"),
    ("Œuvres & Çà", "Œuvres & Çà"),
    ("سلام", "\u2068سلام\u2069"),
])
def test_clean_text(raw: str, clean: str) -> None:
    assert clean == clean_text(raw)


def test_french_spacing_leaves_times_and_urls_alone() -> None:
    text = "Échéance : 15 mars ; « TBox » à 10:30, voir https://x.example/a?b=c !"
    expected = ("Échéance\u00a0: 15 mars\u202f; «\u00a0TBox\u00a0» à 10:30, "
                "voir https://x.example/a?b=c\u202f!")
    assert expected == french_spacing(text)


def test_tidy_text_wraps_keeps_the_signature_line_and_long_words() -> None:
    long_word = "x" * 120
    text = f"Hello,\n\n\n\n{'word ' * 30}\n  - {'item ' * 20}\n{long_word}\n-- \nfooter   "
    tidy = tidy_text(text)
    lines = tidy.splitlines()
    assert "\n\n\n" not in tidy
    assert "-- " in lines
    assert long_word in lines
    assert all(len(line) <= 72 for line in lines if line != long_word)
    assert any(line.startswith("    item") for line in lines)  # bullets keep their indent


def test_templates_folder_is_found_relative_to_the_package() -> None:
    assert Path(TEMPLATES, "layout.html.j2").is_file()
