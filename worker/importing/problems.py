"""Errors and warnings of one import, each written `path: message`.

Paths name the place in the file (`customers[3].admins[0].email`). Errors come back in
file order (section by section, record by record) whatever check found them.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTIONS = (
    "resellers",
    "customers",
    "subscriptions",
    "purchase_authorizations",
    "reseller_change_codes",
)


@dataclass(frozen=True, slots=True)
class Where:
    """A place in the file: its printed path and a key that sorts it in file order."""

    key: tuple[int, int]
    path: str

    def field(self, name: str) -> Where:
        return Where(self.key, f"{self.path}.{name}")

    def item(self, index: int) -> Where:
        return Where(self.key, f"{self.path}[{index}]")


FILE = Where((-1, 0), "file")


def section_where(section: str) -> Where:
    return Where((SECTIONS.index(section), -1), section)


def record_where(section: str, index: int) -> Where:
    return Where((SECTIONS.index(section), index), f"{section}[{index}]")


class Problems:
    """Collects every error and warning; the import is refused if there is any error."""

    def __init__(self) -> None:
        self._errors: list[tuple[tuple[int, int], int, str]] = []
        self._warnings: list[str] = []

    def copy(self) -> Problems:
        copied = Problems()
        copied._errors = list(self._errors)
        copied._warnings = list(self._warnings)
        return copied

    def error(self, where: Where, message: str) -> None:
        self._errors.append((where.key, len(self._errors), f"{where.path}: {message}"))

    def warn(self, where: Where, message: str) -> None:
        self._warnings.append(f"{where.path}: {message}")

    @property
    def has_errors(self) -> bool:
        return bool(self._errors)

    def errors(self) -> list[str]:
        return [text for _key, _seq, text in sorted(self._errors)]

    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)
