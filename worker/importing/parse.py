"""From the file's bytes to the records each section carries, checked field by field."""

from __future__ import annotations

import codecs
import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from worker.importing.fields import json_type, key_shown
from worker.importing.problems import (
    FILE,
    SECTIONS,
    Problems,
    Where,
    record_where,
    section_where,
)
from worker.importing.shapes import SHAPES, Reading, read_object


@dataclass(slots=True)
class Incoming:
    """One record of the file: where it is, its id (None if unusable), what it carries."""

    section: str
    where: Where
    id: str | None
    reading: Reading

    @property
    def values(self) -> dict[str, Any]:
        return self.reading.values

    def carries(self, name: str) -> bool:
        return name in self.reading.values

    def sound(self, name: str) -> bool:
        """False when the file gave this field a value that was refused."""
        return name not in self.reading.bad


class _ConstantError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _ConstantError(f"{name} is not a JSON value")


class _Repeated(dict[str, Any]):
    """A JSON object that names a key more than once: `repeated` lists those keys.

    JSON leaves duplicate keys undefined and Python keeps the last one silently, so a
    file that says `"licences": 5, …, "licences": 500` would mean whatever the parser
    chose. Such an object is refused at its path instead.
    """

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    counts = Counter(key for key, _value in pairs)
    marked = _Repeated(obj)
    marked.repeated = tuple(key for key, count in counts.items() if count > 1)
    return marked


def repeated_keys(obj: dict[str, Any]) -> tuple[str, ...]:
    """The keys this decoded object named more than once (none for most)."""
    return obj.repeated if isinstance(obj, _Repeated) else ()


_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _refused_bytes(raw: bytes) -> str | None:
    """Why these bytes are not UTF-8 JSON text, for the cases a decoder words badly."""
    for bom, encoding in _WIDE_BOMS:  # UTF-32 LE starts with UTF-16 LE's mark: test it first
        if raw.startswith(bom):
            return f"encoded as {encoding} (byte-order mark); save it as UTF-8"
    nul = raw.find(b"\0")
    if nul >= 0:
        return (f"contains a NUL byte at byte {nul}: not UTF-8 text "
                "(UTF-16 without a byte-order mark?); save it as UTF-8")
    return None


def decode(raw: bytes | str, problems: Problems) -> Any:
    """The decoded document, or None after recording why the file is not JSON.

    The file must be UTF-8; a UTF-8 byte-order mark is skipped (some editors write
    one), UTF-16 and UTF-32 are refused. JSON's grammar is held to the letter: no
    NaN or Infinity, no key twice in one object (refused later, at its path), no
    integer longer than Python converts (4,300 digits), no nesting deeper than the
    interpreter's recursion limit.
    """
    if isinstance(raw, bytes):
        refused = _refused_bytes(raw)
        if refused is not None:
            problems.error(FILE, refused)
            return None
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            problems.error(FILE, f"not valid UTF-8 (byte {error.start}): {error.reason}")
            return None
    if not raw.strip():
        problems.error(FILE, "empty: expected a JSON object")
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant, object_pairs_hook=_object)
    except json.JSONDecodeError as error:
        problems.error(
            FILE, f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        )
    except _ConstantError as error:
        problems.error(FILE, f"not valid JSON: {error}")
    except RecursionError:
        problems.error(FILE, "not valid JSON: nested too deeply")
    except ValueError:  # an integer beyond sys.get_int_max_str_digits()
        problems.error(FILE, "not valid JSON: a number has more than "
                             f"{sys.get_int_max_str_digits()} digits")
    return None


def read_sections(document: Any, problems: Problems) -> dict[str, list[Incoming]]:
    """Every section's records, each read against its shape (errors recorded)."""
    sections: dict[str, list[Incoming]] = {name: [] for name in SECTIONS}
    if not isinstance(document, dict):
        problems.error(FILE, f"the top level must be a JSON object, not {json_type(document)}")
        return sections
    for name in repeated_keys(document):
        problems.error(Where(FILE.key, key_shown(name)), "section given more than once")
    for name, value in document.items():
        if name not in SHAPES:
            problems.warn(Where(FILE.key, key_shown(name)),
                          f"unknown section, ignored (known: {', '.join(SECTIONS)})")
            continue
        if not isinstance(value, list):
            problems.error(section_where(name),
                           f"must be a list of objects, not {json_type(value)}")
            continue
        sections[name] = _read_records(name, value, problems)
    return sections


def _read_records(section: str, items: list[Any], problems: Problems) -> list[Incoming]:
    shape = SHAPES[section]
    records = []
    for index, item in enumerate(items):
        where = record_where(section, index)
        if not isinstance(item, dict):
            problems.error(where, f"must be an object, not {json_type(item)}")
            continue
        reading = read_object(item, shape, where, problems, nested=False)
        record_id = reading.values.get("id")
        if record_id is None and "id" not in reading.bad:
            problems.error(where.field("id"), "required")
        records.append(Incoming(section, where, record_id, reading))
    return records


_LISTED = 3  # other places of a duplicate id named in its error; the rest are counted


def first_by_id(records: list[Incoming], problems: Problems) -> dict[str, Incoming]:
    """Each id's first record; an id used again in the section is an error at the first."""
    groups: dict[str, list[Incoming]] = {}
    for record in records:
        if record.id is not None:
            groups.setdefault(record.id, []).append(record)
    for record_id, group in groups.items():
        if len(group) > 1:
            also = ", ".join(other.where.path for other in group[1:1 + _LISTED])
            if len(group) > 1 + _LISTED:
                also += f" and {len(group) - 1 - _LISTED} more"
            problems.error(group[0].where.field("id"), f"duplicate id {record_id!r} (also {also})")
    return {record_id: group[0] for record_id, group in groups.items()}
