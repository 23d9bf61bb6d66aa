"""From the file's bytes to the records each section carries, checked field by field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.importing.fields import json_type
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


def decode(raw: bytes | str, problems: Problems) -> Any:
    """The decoded document, or None after recording why the file is not JSON."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            problems.error(FILE, f"not valid UTF-8 (byte {error.start}): {error.reason}")
            return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        problems.error(
            FILE, f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        )
    except _ConstantError as error:
        problems.error(FILE, f"not valid JSON: {error}")
    except RecursionError:
        problems.error(FILE, "not valid JSON: nested too deeply")
    return None


def read_sections(document: Any, problems: Problems) -> dict[str, list[Incoming]]:
    """Every section's records, each read against its shape (errors recorded)."""
    sections: dict[str, list[Incoming]] = {name: [] for name in SECTIONS}
    if not isinstance(document, dict):
        problems.error(FILE, f"the top level must be a JSON object, not {json_type(document)}")
        return sections
    for name, value in document.items():
        if name not in SHAPES:
            problems.warn(Where(FILE.key, name), "unknown section, ignored")
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


def first_by_id(records: list[Incoming], problems: Problems) -> dict[str, Incoming]:
    """Each id's first record; an id used again in the section is an error at the first."""
    groups: dict[str, list[Incoming]] = {}
    for record in records:
        if record.id is not None:
            groups.setdefault(record.id, []).append(record)
    for record_id, group in groups.items():
        if len(group) > 1:
            also = ", ".join(other.where.path for other in group[1:])
            problems.error(group[0].where.field("id"), f"duplicate id {record_id!r} (also {also})")
    return {record_id: group[0] for record_id, group in groups.items()}
