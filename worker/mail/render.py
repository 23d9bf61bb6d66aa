"""A notification row in, its subject, plain text and HTML out (docs/rules.md, "Emails").

Templates live in `templates/email/<lang>/<kind>/<audience>.{subject,txt,html}.j2`; the
text and HTML ones extend `<lang>/base.{txt,html}.j2`, which extend the one shared
`layout.{txt,html}.j2`. The language is the first folder of the recipient's locale
chain that has the kind: `fr_CA` -> `fr` -> `en`, anything else -> `en`.

- A missing variable is an error (`StrictUndefined`, raised as `RenderError`).
- `.html.j2` templates are autoescaped (`select_autoescape` would not cover them).
- Data is cleaned before it reaches a template: line breaks, control characters and
  bidi overrides go, and right-to-left text is isolated so it cannot reorder ours.
- Dates, times and counts go through Babel, in the recipient's locale and timezone;
  English without a region is written the international way ("15 March 2027").
- The HTML's `<style>` block is inlined, as mail clients drop style sheets.
"""

from __future__ import annotations

import json
import re
import textwrap
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_timezone_name
from babel.numbers import format_decimal
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    Undefined,
    pass_context,
)
from jinja2.runtime import Context

from worker.rules.notices import AUDIENCES, CUSTOMER, RESELLER
from worker.support.resources import resource_dir

DEFAULT_LANGUAGE = "en"
PARTS = ("subject", "txt", "html")
TEXT_WIDTH = 72
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_FIRST_STRONG_ISOLATE, _POP_ISOLATE = "\u2068", "\u2069"
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False)


class RenderError(Exception):
    """A notification cannot be rendered: missing variable, bad value, unknown kind."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    language: str  # of the templates used ("fr", "en"): the Content-Language


# -- data cleaning ---------------------------------------------------------------------


def clean_text(value: str) -> str:
    """One line of plain text: whitespace runs (CR, LF, tabs...) become one space, other
    control characters and bidi overrides go; right-to-left text is isolated."""
    value = value.translate(_BIDI_CONTROLS)
    value = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in value)
    value = " ".join(value.split())
    if any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in value):
        return f"{_FIRST_STRONG_ISOLATE}{value}{_POP_ISOLATE}"
    return value


def clean_data(value: Any) -> Any:
    """`clean_text` on every string of a JSON-like value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {str(key): clean_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_data(item) for item in value]
    return value


# -- locales ---------------------------------------------------------------------------


def parse_locale(name: str) -> Locale | None:
    """The Babel locale of `fr_CA`, `fr-CA`, `en`...; None when Babel does not know it."""
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def locale_chain(name: str) -> tuple[str, ...]:
    """Template folders to try, most specific first: fr_CA -> fr -> en; xx -> en."""
    parsed = parse_locale(name)
    candidates = [str(parsed), parsed.language] if parsed is not None else []
    candidates.append(DEFAULT_LANGUAGE)
    return tuple(dict.fromkeys(candidates))


def format_locale(name: str, folder: str) -> Locale:
    """The locale dates and numbers are written in, given the template folder used.

    The recipient's own locale when it speaks the folder's language (fr_CA, en_US);
    otherwise the folder's language, English being the international one (en_001).
    """
    language = Locale.parse(folder).language
    parsed = parse_locale(name)
    if parsed is not None and parsed.language == language and parsed.territory:
        return parsed
    return Locale.parse("en_001" if language == "en" else folder)


# -- formatting filters ----------------------------------------------------------------


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _moment(value: Any) -> datetime:
    value = _defined(value)
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"a moment without an offset: {value!r}")
    return moment


def _day(value: Any, zone: ZoneInfo) -> date:
    value = _defined(value)
    if isinstance(value, datetime) or (isinstance(value, str) and "T" in value):
        return _moment(value).astimezone(zone).date()
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Formatter:
    """Babel formatting for one recipient: locale and timezone."""

    locale: Locale
    zone: ZoneInfo

    def day(self, value: Any) -> str:
        """« 1er mars 2027 », "15 March 2027", "March 15, 2027" (en_US)."""
        day = _day(value, self.zone)
        text = str(format_date(day, format="long", locale=self.locale))
        if self.locale.language == "fr" and day.day == 1:
            text = re.sub(r"^1(?=\s)", "1er", text)
        return text

    def clock(self, value: Any) -> str:
        local = _moment(value).astimezone(self.zone)
        return str(format_time(local, format="short", locale=self.locale))

    def zone_name(self, value: Any) -> str:
        local = _moment(value).astimezone(self.zone)
        return str(get_timezone_name(local, width="long", locale=self.locale))

    def number(self, value: Any) -> str:
        return str(format_decimal(_defined(value), locale=self.locale))

    def count(self, value: Any, one: str, other: str) -> str:
        """`12 licences`, `1 licence`; French counts 0 as singular, English does not."""
        form = self.locale.plural_form(abs(_defined(value)))
        return f"{self.number(value)} {one if form == 'one' else other}"


def _formatter(context: Context) -> Formatter:
    found = context.get("_formatter")
    if not isinstance(found, Formatter):
        raise RenderError("templates must be rendered through render_notification")
    return found


@pass_context
def _day_filter(context: Context, value: Any) -> str:
    return _formatter(context).day(value)


@pass_context
def _clock_filter(context: Context, value: Any) -> str:
    return _formatter(context).clock(value)


@pass_context
def _zone_filter(context: Context, value: Any) -> str:
    return _formatter(context).zone_name(value)


@pass_context
def _number_filter(context: Context, value: Any) -> str:
    return _formatter(context).number(value)


@pass_context
def _count_filter(context: Context, value: Any, one: str, other: str) -> str:
    return _formatter(context).count(value, one, other)


def _short(value: Any, length: int = 60) -> str:
    """At most `length` characters, for names in a subject line."""
    text = str(_defined(value))
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


# -- the environment -------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html"))


@cache
def environment(folder: Path | None = None) -> Environment:
    """The one environment over `templates/email/` (or `folder`, for tests)."""
    root = folder or resource_dir("templates") / "email"
    env = Environment(
        loader=FileSystemLoader(root),
        autoescape=_autoescape,  # noqa: S701 (a function: on for every .html.j2)
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        auto_reload=False,  # templates ship with the code: no stat() per render
    )
    env.filters.update(day=_day_filter, clock=_clock_filter, zone=_zone_filter,
                       number=_number_filter, count=_count_filter, short=_short)
    return env


def template_name(folder: str, kind: str, audience: str, part: str) -> str:
    return f"{folder}/{kind}/{audience}.{part}.j2"


def _templates(env: Environment, kind: str, audience: str, locale: str) -> dict[str, Template]:
    chain = locale_chain(locale)
    subject = env.select_template([template_name(f, kind, audience, "subject") for f in chain])
    folder = str(subject.name).split("/", 1)[0]
    rest = chain[chain.index(folder):]
    found = {"subject": subject}
    for part in PARTS[1:]:
        found[part] = env.select_template([template_name(f, kind, audience, part) for f in rest])
    return found


# -- rendering -------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise RenderError(f"unknown timezone {name!r}") from None


def _context(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row["payload"]
    payload = clean_data(json.loads(raw) if isinstance(raw, str) else dict(raw))
    names = [name for name in payload.pop("recipient_names", []) if name]
    reseller = payload["reseller"]
    greeting = names[0] if len(names) == 1 and names[0] != reseller["name"] else None
    return {**payload, "recipient_names": names, "greeting_name": greeting,
            "kind": row["kind"], "audience": row["audience"]}


def audiences_of(kind: str) -> tuple[str, ...]:
    """The stored audiences of a kind ("requesting_reseller" is stored as "reseller")."""
    found = (CUSTOMER if audience == CUSTOMER else RESELLER for audience in AUDIENCES[kind])
    return tuple(dict.fromkeys(found))


def _check_pair(kind: str, audience: str) -> None:
    if kind not in AUDIENCES or audience not in audiences_of(kind):
        raise RenderError(f"no {audience!r} email for kind {kind!r}")


def render_notification(row: Mapping[str, Any]) -> RenderedEmail:
    """Subject, text and HTML of one stored notification row (see `worker.passes.effects`)."""
    kind, audience, locale = str(row["kind"]), str(row["audience"]), str(row["locale"])
    _check_pair(kind, audience)
    try:
        templates = _templates(environment(), kind, audience, locale)
        folder = str(templates["subject"].name).split("/", 1)[0]
        context = _context(row)
        context["_formatter"] = Formatter(format_locale(locale, folder), _zone(row["timezone"]))
        context["lang"] = Locale.parse(folder).language
        return _render(templates, context)
    except (TemplateError, KeyError, TypeError, ValueError) as error:
        raise RenderError(f"{kind}/{audience}/{locale}: {type(error).__name__}: {error}") from error


def _render(templates: dict[str, Template], context: dict[str, Any]) -> RenderedEmail:
    french = context["lang"] == "fr"
    subject = one_line(templates["subject"].render(context))
    subject = french_spacing(subject) if french else subject
    text = templates["txt"].render(context, subject=subject)
    html = templates["html"].render(context, subject=subject)
    if french:
        text, html = french_spacing(text), french_spacing_html(html)
    return RenderedEmail(subject, tidy_text(text), _INLINER.inline(html), context["lang"])


# -- post-processing -------------------------------------------------------------------

_BEFORE_COLON = re.compile(r" +:(?=\s|$)")
_BEFORE_HIGH = re.compile(r" +([;!?»])")
_AFTER_OPENING = re.compile(r"« +")
_TAG = re.compile(r"(<[^>]*>)")


def french_spacing(text: str) -> str:
    """French typography: no-break space before « : », narrow ones before ; ! ? and
    inside « guillemets », so that no line starts with a lone punctuation mark."""
    text = _BEFORE_COLON.sub("\u00a0:", text)
    text = _BEFORE_HIGH.sub(lambda m: ("\u00a0" if m[1] == "»" else "\u202f") + m[1], text)
    return _AFTER_OPENING.sub("«\u00a0", text)


def french_spacing_html(html: str) -> str:
    """`french_spacing` on the text between tags, the style sheet left alone."""
    parts, in_style = [], False
    for part in _TAG.split(html):
        if part.startswith("<"):
            in_style = part.lower().startswith("<style")
            parts.append(part)
        else:
            parts.append(part if in_style else french_spacing(part))
    return "".join(parts)


def one_line(text: str) -> str:
    """The template's line breaks and indentation gone; no-break spaces kept."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


_BULLET = re.compile(r"^(\s*(?:[-*•] )?)")


def _wrap(line: str) -> str:
    if len(line) <= TEXT_WIDTH:
        return line
    indent = _BULLET.match(line)
    lead = indent[1] if indent else ""
    return "\n".join(textwrap.wrap(line, TEXT_WIDTH, subsequent_indent=" " * len(lead),
                                   break_long_words=False, break_on_hyphens=False))


def tidy_text(text: str) -> str:
    """Trailing spaces gone (but the "-- " signature line), at most one blank line in a
    row, lines wrapped at 72 characters."""
    lines = [line if line == "-- " else line.rstrip() for line in text.strip().splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return "\n".join(_wrap(line) for line in tidy.splitlines()) + "\n"
