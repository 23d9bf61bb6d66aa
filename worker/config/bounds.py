"""The domain of every value the worker takes from outside, written once.

The import file, the command line and the policy all check their dates, timezones,
locales and text against what is here, so that a value accepted at the door can be
carried through every later pass (date arithmetic, zone conversion, a mail header)
without failing there instead.

Each check raises ValueError saying what is wrong, without the key or path: the caller
names it (pydantic for the policy and the settings, the import's `path: message`, the
command line's option).

Imports: the standard library and Babel only.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import UTC, date, datetime, time
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale

# Dates the worker accepts, from the import file and the command line. Nothing a
# reseller portal sells predates the Unix epoch, and 2200 lies two centuries beyond any
# term (48 months at most) and its renewals, while staying nearly eight millennia away
# from year 9999, where Python's dates end and adding a term or a grace period would
# overflow in every later pass.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2200, 12, 31)
FIRST_MOMENT = datetime.combine(FIRST_DAY, time(0), tzinfo=UTC)
LAST_MOMENT = datetime.combine(LAST_DAY, time(23, 59, 59), tzinfo=UTC)

# Longest forecast, in days: ten years of daily passes (a proposal's effects over the
# longest term and its renewals), each a full simulated pass.
MAX_FORECAST_DAYS = 3660

# Zones the IANA database lists that name no place: `localtime` is whatever the host is
# set to (a different answer on every machine), `Factory` is tzdata's placeholder.
NOT_PLACES = frozenset({"localtime", "Factory"})

# Characters that read as nothing or as something else: C0/C1 controls, format
# characters (zero-width space and joiners, byte-order mark, bidirectional marks and
# overrides), line and paragraph separators, surrogates, private use. Unassigned code
# points are let through: a character newer than this Python's Unicode tables (a recent
# emoji in a company name) is not an attack.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# Letters that render as blank space (Hangul fillers, the Braille blank).
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_LOCALE_TEXT = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8}){0,3}")


def check_day(value: date) -> date:
    """A calendar date within [FIRST_DAY, LAST_DAY]."""
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"{value.isoformat()} is outside the dates the worker handles "
                         f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})")
    return value


def check_moment(value: datetime) -> datetime:
    """An aware instant within the same window (judged in UTC)."""
    if not FIRST_MOMENT <= value <= LAST_MOMENT:
        raise ValueError(f"{value.isoformat()} is outside the dates the worker handles "
                         f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}, UTC)")
    return value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_PLACES


def check_zone(value: str) -> str:
    """An IANA timezone that names a place."""
    if value not in _zones():
        raise ValueError(f"unknown timezone {value!r}")
    return value


@lru_cache(maxsize=1)
def _known() -> tuple[frozenset[str], frozenset[str]]:
    english = Locale("en")
    languages = frozenset(english.languages) - {"und", "root", "zxx", "mul", "mis"}
    territories = frozenset(str(code) for code in english.territories) - {"ZZ", "001"}
    return languages, territories


@lru_cache(maxsize=1024)
def check_locale(value: str) -> str:
    """A locale naming a real language (and, when given, a real territory) that Babel
    resolves: `fr`, `fr_CA`, `fr-CA`, `zh_Hant_TW`; returned as Babel writes it. `und`,
    `root`, `C`, `en_ZZ` or `en.UTF-8` are refused: Babel would quietly read them as
    some other locale."""
    if not _LOCALE_TEXT.fullmatch(value):
        raise ValueError(f"unknown locale {value!r}")
    languages, territories = _known()
    try:
        parts = parse_locale(value.replace("-", "_"))
        resolved = Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {value!r}") from None
    language, territory = parts[0], parts[1]
    if language not in languages or resolved.language != language or (
            territory is not None and territory not in territories):
        raise ValueError(f"unknown locale {value!r}")
    return str(resolved)


def hidden_character(text: str) -> tuple[int, str] | None:
    """The first character of `text` that is invisible or a control, with its index."""
    for index, char in enumerate(text):
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            return index, char
    return None


def visible(text: str) -> bool:
    """Whether `text` shows at least one character (not only spaces, marks or fillers)."""
    return any(not char.isspace() and char not in _BLANK_LOOKING
               and unicodedata.category(char)[0] in "LNPS" for char in text)
