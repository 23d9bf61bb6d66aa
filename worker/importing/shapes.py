"""The shape of each section's records, and reading one JSON object against a shape.

A field is either a scalar (a converter from `fields`), a nested object (`shape`) or a
list of objects (`shape` with `many`). `required` means required for a new record at
the top level (a re-import may leave any field out) and always inside nested objects;
`null` on a required field is an error, elsewhere it clears the value. A name outside
the shape is ignored with a warning that names it (and the likely field it misspells): the
import file's refusals are a closed list, and a portal may carry fields of its own; a key
given twice in one object is refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.importing import fields as f
from worker.importing.problems import Problems, Where

SEGMENTS = ("commercial", "education", "government")
ACCOUNT_STATES = ("active", "suspended", "updating")
INVITATION_STATES = ("pending", "accepted")
WORKER_DERIVED = frozenset({
    "status", "bucket", "payment_standing", "payment_episode", "payment_since",
    "late_notice_barred", "status_since", "next_check_at", "next_digest_at",
    "anchor_day", "first_term_extended", "renewal_spent_through", "pending_due_ad",
    "current_term_months",
})


@dataclass(frozen=True)
class Field:
    convert: f.Converter | None = None
    shape: Shape | None = None
    many: bool = False
    required: bool = False
    max_items: int = 0  # for a list (`many`): at most this many objects


@dataclass(frozen=True)
class Shape:
    fields: Mapping[str, Field]
    unique: str | None = None  # in a list of these objects, this field's values are unique
    required: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(name for name, spec in self.fields.items() if spec.required)
        object.__setattr__(self, "required", names)


@dataclass(slots=True)
class Reading:
    """The fields an object carries, converted; `bad` names those that were refused."""

    values: dict[str, Any]
    bad: set[str]

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if name not in self.values and name not in self.bad]


def read_object(obj: dict[str, Any], shape: Shape, where: Where, problems: Problems,
                *, nested: bool) -> Reading:
    reading = Reading({}, set())
    repeated = getattr(obj, "repeated", ())
    for key in repeated:
        problems.error(where.field(f.key_shown(key)), "given more than once in one object")
    for key, raw in obj.items():
        spec = shape.fields.get(key)
        if spec is None:
            _unknown(key, shape, where, problems)
            continue
        if key in repeated:
            reading.bad.add(key)
            continue
        ok, value = _read_value(raw, spec, where, key, problems)
        if ok:
            reading.values[key] = value
        else:
            reading.bad.add(key)
    if nested:
        for name in reading.missing(shape.required):
            problems.error(where.field(name), "required")
            reading.bad.add(name)
    return reading


def _unknown(key: str, shape: Shape, where: Where, problems: Problems) -> None:
    """A field the worker derives is ignored with a warning (a portal may echo what the
    worker exported; it never sets it); any other unknown name is ignored with a warning
    that says which field it may misspell, so a typo is never silent."""
    if key in WORKER_DERIVED:
        problems.warn(where.field(key), "set by the worker, ignored")
        return
    close = difflib.get_close_matches(key[:100], list(shape.fields), n=1, cutoff=0.8)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(shape.fields)}"
    problems.warn(where.field(f.key_shown(key)), f"unknown field, ignored ({hint})")


def _read_value(raw: Any, spec: Field, where: Where, key: str,
                problems: Problems) -> tuple[bool, Any]:
    if raw is None:
        if spec.required:
            problems.error(where.field(key), "required, must not be null")
            return False, None
        return True, None
    if spec.convert is not None:
        try:
            return True, spec.convert(raw)
        except f.Invalid as error:
            problems.error(where.field(key), error.message)
            return False, None
    assert spec.shape is not None
    if spec.many:
        return _read_list(raw, spec.shape, where.field(key), problems, spec.max_items)
    return _read_nested(raw, spec.shape, where.field(key), problems)


def _read_nested(raw: Any, shape: Shape, where: Where,
                 problems: Problems) -> tuple[bool, dict[str, Any]]:
    if not isinstance(raw, dict):
        problems.error(where, f"must be an object or null, not {f.json_type(raw)}")
        return False, {}
    reading = read_object(raw, shape, where, problems, nested=True)
    return not reading.bad, reading.values


def _read_list(raw: Any, shape: Shape, where: Where, problems: Problems,
               max_items: int) -> tuple[bool, list[dict[str, Any]]]:
    if not isinstance(raw, list):
        problems.error(where, f"must be a list of objects, not {f.json_type(raw)}")
        return False, []
    if len(raw) > max_items:
        problems.error(where, f"too many entries ({len(raw)}; at most {max_items})")
        return False, []
    items: list[dict[str, Any]] = []
    ok = True
    for index, item in enumerate(raw):
        ok_item, values = _read_nested(item, shape, where.item(index), problems)
        ok = ok and ok_item
        items.append({name: values.get(name) for name in shape.fields})
    if shape.unique is not None:
        ok = _unique(items, shape.unique, where, problems) and ok
    return ok, items


def _unique(items: list[dict[str, Any]], key: str, where: Where, problems: Problems) -> bool:
    first: dict[Any, int] = {}
    ok = True
    for index, item in enumerate(items):
        value = item.get(key)
        if value is None:
            continue
        if value in first:
            also = where.item(first[value]).path.rsplit(".", 1)[-1]
            problems.error(where.item(index).field(key), f"duplicate {key} {value!r} (also {also})")
            ok = False
        else:
            first[value] = index
    return ok


def _scalar(convert: f.Converter, *, required: bool = False) -> Field:
    return Field(convert=convert, required=required)


_ID = _scalar(f.identifier, required=True)
_PERSON = Shape({"name": _scalar(f.name(300), required=True),
                 "email": _scalar(f.email, required=True)})
_MANAGER = Shape({"id": _ID, **_PERSON.fields}, unique="id")
_ADMIN = Shape(_PERSON.fields, unique="email")  # the same person twice would get two copies
MAX_ADMINS = 50  # contacts of one customer: every notice goes to each
MAX_MANAGERS = 1000  # account managers of one reseller

RESELLER = Shape({
    "id": _ID,
    "name": _scalar(f.name(300), required=True),
    "email": _scalar(f.email, required=True),
    "sender_name": _scalar(f.name(300)),
    "reply_to": _scalar(f.email),
    "locale": _scalar(f.locale),
    "timezone": _scalar(f.timezone),
    "account_managers": Field(shape=_MANAGER, many=True, max_items=MAX_MANAGERS),
})

CUSTOMER = Shape({
    "id": _ID,
    "reseller_id": _scalar(f.identifier, required=True),
    "name": _scalar(f.name(300), required=True),
    "timezone": _scalar(f.timezone, required=True),
    "segment": _scalar(f.one_of(SEGMENTS)),
    "locale": _scalar(f.locale),
    "country": _scalar(f.country),
    "managed_by": _scalar(f.identifier),
    "admins": Field(shape=_ADMIN, many=True, max_items=MAX_ADMINS),
    "account_state": _scalar(f.one_of(ACCOUNT_STATES)),
    "invitation": Field(shape=Shape({
        "status": _scalar(f.one_of(INVITATION_STATES), required=True),
        "sent_at": _scalar(f.moment),
    })),
})

SUBSCRIPTION = Shape({
    "id": _ID,
    "customer_id": _scalar(f.identifier, required=True),
    "product": _scalar(f.name(200), required=True),
    "start_date": _scalar(f.day, required=True),
    "anniversary_date": _scalar(f.day, required=True),
    "term_months": _scalar(f.integer(1), required=True),
    "licences": _scalar(f.integer(0)),
    "auto_renew": _scalar(f.boolean),
    "renewal": Field(shape=Shape({
        "ordered_on": _scalar(f.day, required=True),
        "years": _scalar(f.integer(1), required=True),
    })),
    "pending_change": Field(shape=Shape({"term_months": _scalar(f.integer(1), required=True)})),
})

PURCHASE_AUTHORIZATION = Shape({
    "id": _ID,
    "customer_id": _scalar(f.identifier, required=True),
    "requested_on": _scalar(f.day, required=True),
    "paid_on": _scalar(f.day),
})

RESELLER_CHANGE_CODE = Shape({
    "id": _ID,
    "customer_id": _scalar(f.identifier, required=True),
    "reseller_id": _scalar(f.identifier, required=True),
    "issued_at": _scalar(f.moment, required=True),
    "used_at": _scalar(f.moment),
})

SHAPES: Mapping[str, Shape] = {
    "resellers": RESELLER,
    "customers": CUSTOMER,
    "subscriptions": SUBSCRIPTION,
    "purchase_authorizations": PURCHASE_AUTHORIZATION,
    "reseller_change_codes": RESELLER_CHANGE_CODE,
}
