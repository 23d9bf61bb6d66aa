"""`preview`: every kind x audience x locale written as .html and .eml, with an index."""

from __future__ import annotations

import email
import re
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from worker.mail.render import audiences_of
from worker.reports.preview import preview_kinds, preview_locales, write_previews
from worker.rules.notices import KINDS


def _stems(kinds: tuple[str, ...], locales: tuple[str, ...]) -> set[str]:
    return {f"{kind}.{audience}.{locale}"
            for kind in kinds for audience in audiences_of(kind) for locale in locales}


@pytest.fixture(scope="module")
def previews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full preview run, shared: it renders 58 messages."""
    out = tmp_path_factory.mktemp("preview")
    index = write_previews(out / "nested" / "dir")
    assert index == out / "nested" / "dir" / "index.html"
    return index.parent


def test_every_kind_audience_and_locale_is_written(previews: Path) -> None:
    """French and English by default, each as the HTML part and the whole message."""
    expected = _stems(KINDS, ("fr", "en"))
    assert {p.name.removesuffix(".html") for p in previews.glob("*.*.*.html")} == expected
    assert {p.name.removesuffix(".eml") for p in previews.glob("*.eml")} == expected


def test_index_links_every_file_with_its_subject(previews: Path) -> None:
    index = (previews / "index.html").read_text(encoding="utf-8")
    links = set(re.findall(r'href="([^"]+)"', index))
    files = {p.name for p in previews.iterdir() if p.name != "index.html"}
    assert links == files
    assert "Votre abonnement TBox arrive à échéance le 15 mars 2027" in index
    assert "Pâtisserie Lefèvre &amp; Fils" in index  # escaped like any data


def test_each_eml_parses_back_with_both_parts(previews: Path) -> None:
    for path in sorted(previews.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(parsed, EmailMessage)
        assert parsed["X-Notification-Kind"] == path.name.split(".")[0]
        assert parsed.get_body(("plain",)) is not None
        assert parsed.get_body(("html",)) is not None


def test_the_html_file_is_a_standalone_page(previews: Path) -> None:
    page = (previews / "grace_ending.customer.fr.html").read_text(encoding="utf-8")
    assert page.lower().startswith("<!doctype html>")
    assert "29 mars 2027" in page


def test_one_kind_in_one_locale(tmp_path: Path) -> None:
    """`preview renewal_upcoming --locale fr-CA` writes that kind's audiences in fr_CA."""
    write_previews(tmp_path, "renewal_upcoming", "fr-CA")
    written = {p.name for p in tmp_path.iterdir()}
    assert written == {"index.html"} | {f"{stem}.{ext}" for stem in
                                        _stems(("renewal_upcoming",), ("fr_CA",))
                                        for ext in ("html", "eml")}


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="renewal_upcoming"):
        preview_kinds("renewal_upcomming")


def test_an_unknown_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown locale"):
        preview_locales("xx_YY")


def test_a_locale_without_templates_previews_in_english(tmp_path: Path) -> None:
    write_previews(tmp_path, "payment_late", "de")
    page = (tmp_path / "payment_late.customer.de.html").read_text(encoding="utf-8")
    assert '<html lang="en"' in page
