"""The catalog contract: items from any vocabulary, their validation, and business filters.

An item is ``item_id``, ``categories`` (strings from any vocabulary), an optional ``title``, flat
``attributes`` (strings and numbers: brand, price, language ...), ``available`` and ``created_at``.
Filters are parsed here once, with one error type, and evaluated over columns built once per
catalog version, so a request costs a few vector comparisons whatever the catalog's size.

Filter syntax (the ``filter`` query parameter): predicates joined by ``;``, all must hold.
A predicate is ``name OP value`` with OP one of ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``;
``=`` and ``!=`` take alternatives separated by ``|`` (``brand=acme|globex``). Numbers compare
as numbers (``price<=50``); an item without the attribute never matches a predicate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.events import MAX_ID_LENGTH, InvalidEvent, check_text

if TYPE_CHECKING:
    from numpy.typing import NDArray

MAX_CATEGORIES_PER_ITEM = 20
MAX_CATEGORY_LENGTH = 64
MAX_TITLE_LENGTH = 300
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_TEXT = 256
MAX_ATTRIBUTE_NUMBER = 1e15
MAX_FILTER_LENGTH = 1000
MAX_PREDICATES = 10
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_ITEM_FIELDS = frozenset(
    {"item_id", "categories", "genres", "title", "attributes", "available", "created_at"}
)


class InvalidItem(ValueError):
    """A catalog item that breaks the contract; the message says why."""


class InvalidFilter(ValueError):
    """A filter expression that cannot be parsed; the message says where."""


AttributeValue = str | float


@dataclass(frozen=True)
class CatalogItem:
    """One item of a team's catalog."""

    item_id: str
    categories: tuple[str, ...] = ()
    title: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    available: bool = True
    created_at: int = 0  # epoch ms

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready form (the admin API's answer, the import format, the store's item)."""
        record: dict[str, Any] = {
            "item_id": self.item_id,
            "categories": list(self.categories),
            "attributes": dict(self.attributes),
            "available": self.available,
            "created_at": self.created_at,
        }
        if self.title is not None:
            record["title"] = self.title
        return record


def validate_item(raw: Any, now_ms: int, item_id: str | None = None) -> CatalogItem:
    """A catalog item from its JSON form; ``genres`` is accepted as an alias of ``categories``."""
    if not isinstance(raw, dict):
        raise InvalidItem("an item must be a JSON object")
    unknown = sorted(set(raw) - _ITEM_FIELDS)
    if unknown:
        raise InvalidItem(f"unknown field(s): {', '.join(str(u)[:40] for u in unknown[:10])}")
    body_id = raw.get("item_id", item_id)
    if item_id is not None and body_id != item_id:
        raise InvalidItem("item_id in the body differs from the path")
    try:
        checked_id = check_text(body_id, "item_id", MAX_ID_LENGTH)
    except InvalidEvent as error:
        raise InvalidItem(str(error)) from None
    return CatalogItem(
        item_id=checked_id,
        categories=_categories(raw.get("categories", raw.get("genres", []))),
        title=_title(raw.get("title")),
        attributes=_attributes(raw.get("attributes", {})),
        available=_available(raw.get("available", True)),
        created_at=_created_at(raw.get("created_at"), now_ms),
    )


def _categories(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_CATEGORIES_PER_ITEM:
        raise InvalidItem(f"categories must be a list of at most {MAX_CATEGORIES_PER_ITEM} strings")
    try:
        return tuple(dict.fromkeys(check_text(c, "a category", MAX_CATEGORY_LENGTH).strip() for c in raw))
    except InvalidEvent as error:
        raise InvalidItem(str(error)) from None


def _title(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        return check_text(raw, "title", MAX_TITLE_LENGTH)
    except InvalidEvent as error:
        raise InvalidItem(str(error)) from None


def _attributes(raw: Any) -> dict[str, AttributeValue]:
    if not isinstance(raw, dict) or len(raw) > MAX_ATTRIBUTES:
        raise InvalidItem(f"attributes must be a flat object of at most {MAX_ATTRIBUTES} entries")
    attributes: dict[str, AttributeValue] = {}
    for name, value in raw.items():
        if not ATTRIBUTE_NAME.match(name):
            raise InvalidItem(
                f"attribute name {name[:40]!r}: letters, digits, _ . - (at most 32, not first digit)"
            )
        if isinstance(value, bool) or value is None:
            raise InvalidItem(f"attribute {name}: a string or a number")
        if isinstance(value, int | float):
            if not (isinstance(value, int) or math.isfinite(value)) or abs(value) > MAX_ATTRIBUTE_NUMBER:
                raise InvalidItem(
                    f"attribute {name}: numbers are finite and at most {MAX_ATTRIBUTE_NUMBER:g}"
                )
            attributes[name] = float(format(float(value), ".12g"))
        elif isinstance(value, str):
            try:
                attributes[name] = check_text(value, f"attribute {name}", MAX_ATTRIBUTE_TEXT)
            except InvalidEvent as error:
                raise InvalidItem(str(error)) from None
        else:
            raise InvalidItem(f"attribute {name}: a string or a number (attributes are flat)")
    return attributes


def _available(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise InvalidItem("available must be true or false")
    return raw


def _created_at(raw: Any, now_ms: int) -> int:
    if raw is None:
        return now_ms
    from rtrec.events import parse_timestamp

    try:
        return parse_timestamp(raw)
    except InvalidEvent as error:
        raise InvalidItem(f"created_at: {error}") from None


# ---------- filters ----------

_OPERATORS = ("<=", ">=", "!=", "=", "<", ">")
# ASCII decimals of bounded size: float() would also take other scripts' digits and overflow to inf.
NUMBER_PATTERN = r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})(?:[eE][+-]?[0-9]{1,2})?"
_NUMBER = re.compile(rf"^\s*{NUMBER_PATTERN}\s*$")
_PREDICATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]{0,31})\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Predicate:
    """One ``name OP value`` test on an item attribute."""

    name: str
    operator: str
    values: tuple[str, ...]  # alternatives for = and !=; one value otherwise
    number: float | None = None  # the value as a number, for < <= > >= (and numeric =)


@dataclass(frozen=True)
class ItemFilter:
    """What a request asks of the items: categories (any of) and attribute predicates (all of)."""

    categories: frozenset[str] = frozenset()
    predicates: tuple[Predicate, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.categories and not self.predicates


def parse_filter(expression: str | None) -> tuple[Predicate, ...]:
    """Parse a filter expression; raises InvalidFilter naming the predicate that is wrong."""
    if expression is None or not expression.strip():
        return ()
    if len(expression) > MAX_FILTER_LENGTH:
        raise InvalidFilter(f"a filter is at most {MAX_FILTER_LENGTH} characters")
    pieces = expression.split(";")
    if len(pieces) > MAX_PREDICATES:
        raise InvalidFilter(f"at most {MAX_PREDICATES} predicates")
    parts = [p for p in pieces if p.strip()]
    predicates = []
    for part in parts:
        match = _PREDICATE.match(part)
        if match is None or not match.group(3):
            expected = f"expected name OP value with OP one of {' '.join(_OPERATORS)}"
            raise InvalidFilter(f"cannot parse {part.strip()[:60]!r}: {expected}")
        name, operator, value = match.groups()
        if operator in ("=", "!="):
            values = tuple(v.strip() for v in value.split("|"))
            if not all(values):
                raise InvalidFilter(f"{part.strip()[:60]!r}: an empty alternative")
            number = _number(values[0]) if len(values) == 1 else None
            predicates.append(Predicate(name, operator, values, number))
        else:
            number = _number(value)
            if number is None:
                raise InvalidFilter(f"{part.strip()[:60]!r}: {operator} needs a number")
            predicates.append(Predicate(name, operator, (value,), number))
    return tuple(predicates)


def filter_pattern() -> str:
    """The regular expression of what ``parse_filter`` accepts, for the OpenAPI document."""
    name = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}"
    alternative = r"[^;|]*[^;|\s][^;|]*"
    number = NUMBER_PATTERN
    equality = rf"\s*{name}\s*!?=\s*{alternative}(?:\|{alternative})*"
    comparison = rf"\s*{name}\s*(?:<=|>=|<|>)\s*{number}\s*"
    part = rf"(?:{equality}|{comparison}|\s*)"
    return rf"^{part}(?:;{part}){{0,{MAX_PREDICATES - 1}}}$"


def _number(text: str) -> float | None:
    if not _NUMBER.match(text):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class CatalogColumns:
    """Columnar views of a catalog's attributes and categories, for vectorised filters.

    Row 0 is padding (never matches), rows 1..n follow the catalog's model indices.
    """

    def __init__(self, items: Sequence[CatalogItem | None], vocabulary: Sequence[str]) -> None:
        rows = len(items) + 1
        self.available = np.zeros(rows, dtype=bool)
        self.created_at = np.zeros(rows, dtype=np.int64)
        self._vocabulary = {name: i for i, name in enumerate(vocabulary)}
        self.category_matrix = np.zeros((rows, max(1, len(vocabulary))), dtype=bool)
        numbers: dict[str, NDArray[Any]] = {}
        texts: dict[str, NDArray[Any]] = {}
        for row, item in enumerate(items, start=1):
            if item is None:
                continue
            self.available[row] = item.available
            self.created_at[row] = item.created_at
            for category in item.categories:
                column = self._vocabulary.get(category)
                if column is not None:
                    self.category_matrix[row, column] = True
            for name, value in item.attributes.items():
                if isinstance(value, float):
                    numbers.setdefault(name, np.full(rows, np.nan))[row] = value
                else:
                    texts.setdefault(name, np.full(rows, None, dtype=object))[row] = value
        self._numbers = numbers
        self._texts = texts

    def mask(self, item_filter: ItemFilter) -> NDArray[Any]:
        """True for rows that pass ``item_filter`` (availability is not part of it)."""
        mask = np.ones(len(self.available), dtype=bool)
        mask[0] = False
        if item_filter.categories:
            columns = [self._vocabulary[c] for c in item_filter.categories if c in self._vocabulary]
            mask &= self.category_matrix[:, columns].any(axis=1) if columns else False
        for predicate in item_filter.predicates:
            mask &= self._predicate_mask(predicate)
        return mask

    def _predicate_mask(self, predicate: Predicate) -> NDArray[Any]:
        numbers = self._numbers.get(predicate.name)
        texts = self._texts.get(predicate.name)
        rows = len(self.available)
        if predicate.operator in ("=", "!="):
            hits = np.zeros(rows, dtype=bool)
            present = np.zeros(rows, dtype=bool)
            if texts is not None:
                present |= texts != None  # noqa: E711 (elementwise on an object array)
                hits |= np.isin(texts, list(predicate.values))
            if numbers is not None:
                present |= ~np.isnan(numbers)
                wanted = [n for n in (_number(v) for v in predicate.values) if n is not None]
                if wanted:
                    hits |= np.isin(numbers, wanted)
            return hits if predicate.operator == "=" else present & ~hits
        if numbers is None or predicate.number is None:
            return np.zeros(rows, dtype=bool)
        with np.errstate(invalid="ignore"):
            comparisons: dict[str, np.ufunc] = {
                "<": np.less,
                "<=": np.less_equal,
                ">": np.greater,
                ">=": np.greater_equal,
            }
            compare = comparisons[predicate.operator]
            matches: NDArray[np.bool_] = np.asarray(compare(numbers, predicate.number)) & ~np.isnan(numbers)
            return matches


def vocabulary_of(items: Iterable[CatalogItem]) -> list[str]:
    """The category vocabulary of a catalog: every category in first-seen order."""
    return list(dict.fromkeys(category for item in items for category in item.categories))
