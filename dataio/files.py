"""Bring your own catalog: interactions and items from JSON Lines, CSV or Parquet files.

The format is chosen by the file name's ending: ``.jsonl``, ``.jsonl.gz``, ``.csv``, ``.csv.gz``, ``.parquet``
(Parquet is read with DuckDB, imported only then).

Interactions, one row per event:

| column | rule (``rtrec.events``, as the API applies it) |
|---|---|
| ``user_id`` | required; 1–128 characters, no control characters |
| ``item_id`` | required; 1–64 characters, no control characters |
| ``type`` | required; one of ``rtrec.features.EVENT_TYPES`` |
| ``value`` | optional number in its type's range (``rating`` 0–5, others 0–1e9); absent/empty/null = NaN |
| ``timestamp`` | required; epoch **milliseconds** or ISO-8601 with a zone, from 2000-01-01 to now + 5 min |

``event_id``, ``session_id``, ``recommendation_id`` and ``context`` are accepted and ignored; any other
column is an error (a misspelt ``value`` would otherwise vanish silently). Integer ids (``user_id``,
``item_id`` of events and items) are read as their decimal text; in Parquet a NaN is a missing value.

Items, one row per item, validated by ``rtrec.catalog.validate_item``:
``item_id``, ``categories`` (a JSON list in JSONL and Parquet, ``|``-separated in CSV), ``title``?,
``attributes`` (a flat JSON object; in CSV every extra column becomes an attribute, numbers parsed,
empty cells absent), ``available``? (default true), ``created_at``? (epoch ms or ISO-8601; when absent,
``default_created_at_ms``, 0 unless given: an offline dataset has no meaningful "now"). A repeated
``item_id`` is an error.

A bad row raises ``InvalidRow`` naming the file and line (Parquet: row). With ``skip_invalid=True`` bad
rows are skipped instead, counted in ``Dataset.skipped_rows`` and the first few logged as warnings.

``read_items(path)`` and ``read_interactions(path)`` read one file each with the same rules (the catalog
import reads items alone; there an absent ``created_at`` means now, as in the admin API).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from dataio.dataset import Dataset, InteractionColumns, fingerprint_of
from rtrec.catalog import CatalogItem, InvalidItem, validate_item
from rtrec.events import (
    MAX_ID_LENGTH,
    InvalidEvent,
    check_text,
    check_timestamp_window,
    check_value,
    loads_strict,
    parse_timestamp,
    validate_user_id,
)
from rtrec.features import EVENT_TYPES

log = logging.getLogger(__name__)

FORMATS = {
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
}
INTERACTION_COLUMNS = frozenset({"user_id", "item_id", "type", "value", "timestamp"})
IGNORED_INTERACTION_COLUMNS = frozenset({"event_id", "session_id", "recommendation_id", "context"})
ITEM_COLUMNS = frozenset({"item_id", "categories", "title", "attributes", "available", "created_at"})
CSV_CATEGORY_SEPARATOR = "|"
LOGGED_ERRORS = 5
_NUMBER = re.compile(r"^[-+]?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class InvalidRow(ValueError):
    """A row that breaks the data contract: ``path:line: reason``."""

    def __init__(self, path: Path, where: str, reason: str) -> None:
        super().__init__(f"{path}:{where}: {reason}")
        self.path = path
        self.where = where
        self.reason = reason


def format_of(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the file name's ending."""
    name = path.name.lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise ValueError(f"{path}: unknown format; expected a name ending in {', '.join(FORMATS)}")


# ---------- rows: (where, raw dict) per format ----------


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict", newline="")
    return path.open("r", encoding="utf-8", errors="strict", newline="")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with _open_text(path) as handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"line {line_no}", _json_or_error(line)
        except UnicodeDecodeError:
            raise InvalidRow(path, f"after line {line_no}", "not UTF-8 text") from None


def _json_or_error(line: str) -> Any:
    try:
        return loads_strict(line)
    except InvalidEvent as error:
        return _Broken(str(error))


@dataclass(frozen=True)
class _Broken:
    """A row that could not even be decoded; validated into an error later, where line numbers are known."""

    reason: str


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with _open_text(path) as handle:
        reader = csv.DictReader(handle, restkey="\0extra")
        try:
            header = reader.fieldnames or []
            if len(set(header)) != len(header):
                raise InvalidRow(path, "line 1", "repeated column names in the header")
            for row in reader:
                where = f"line {reader.line_num}"
                if "\0extra" in row:
                    yield where, _Broken("more fields than the header has columns")
                elif any(value is None for value in row.values()):
                    yield where, _Broken("fewer fields than the header has columns")
                else:
                    yield where, row
        except UnicodeDecodeError:
            raise InvalidRow(path, f"after line {reader.line_num}", "not UTF-8 text") from None
        except csv.Error as error:
            raise InvalidRow(path, f"line {reader.line_num}", f"not valid CSV: {error}") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"{path}: reading Parquet needs duckdb (pip install duckdb)") from None
    with duckdb.connect() as connection:
        try:
            cursor = connection.execute("SELECT * FROM read_parquet(?)", [str(path)])
        except duckdb.Error as error:
            raise InvalidRow(path, "file", f"not a readable Parquet file: {error}") from None
        names = [column[0] for column in cursor.description]
        row_no = 0
        while batch := cursor.fetchmany(10_000):
            for values in batch:
                row_no += 1
                yield f"row {row_no}", {n: _from_parquet(v) for n, v in zip(names, values, strict=True)}


def _from_parquet(value: Any) -> Any:
    """DuckDB's Python values as the JSON form: timestamps to epoch ms, decimals to floats, NaN as NULL,
    NULL struct fields dropped."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)  # Parquet timestamps are UTC
        return round(moment.timestamp() * 1000)
    if isinstance(value, Decimal):  # DECIMAL columns; a JSON number is a float
        return float(value)
    if isinstance(value, float) and math.isnan(value):  # how pandas writes a missing number
        return None
    if isinstance(value, dict):
        return {k: _from_parquet(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_from_parquet(v) for v in value]
    return value


_READERS: dict[str, Callable[[Path], Iterator[tuple[str, Any]]]] = {
    "jsonl": _jsonl_rows,
    "csv": _csv_rows,
    "parquet": _parquet_rows,
}


# ---------- validation ----------


@dataclass(frozen=True)
class _Row:
    user_id: str
    item_id: str
    type: str
    value: float  # NaN when absent
    timestamp_ms: int


def _id_text(value: Any) -> Any:
    """Integer ids (common in Parquet and JSON exports) as their decimal text; anything else unchanged."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _InteractionValidator:
    """The API's event rules for one file row, with ids already checked remembered (rows repeat them)."""

    def __init__(self, now_ms: int, textual: bool) -> None:
        self.now_ms = now_ms
        self.textual = textual  # CSV: every cell is a string
        self.users: set[str] = set()
        self.items: set[str] = set()

    def __call__(self, raw: Any) -> _Row:
        if isinstance(raw, _Broken):
            raise InvalidEvent(raw.reason)
        if not isinstance(raw, dict):
            raise InvalidEvent("a row must be a JSON object")
        unknown = set(raw) - INTERACTION_COLUMNS - IGNORED_INTERACTION_COLUMNS
        if unknown:
            raise InvalidEvent(f"unknown column(s): {', '.join(sorted(str(u)[:40] for u in unknown))}")
        user_id, item_id = _id_text(raw.get("user_id")), _id_text(raw.get("item_id"))
        if not isinstance(user_id, str) or user_id not in self.users:
            if user_id is None or user_id == "":
                raise InvalidEvent("user_id is required")
            self.users.add(validate_user_id(user_id))
        if not isinstance(item_id, str) or item_id not in self.items:
            if item_id is None or item_id == "":
                raise InvalidEvent("item_id is required")
            self.items.add(check_text(item_id, "item_id", MAX_ID_LENGTH))
        event_type = raw.get("type")
        if event_type not in EVENT_TYPES:
            raise InvalidEvent(f"type must be one of {', '.join(EVENT_TYPES)}")
        timestamp = raw.get("timestamp")
        if timestamp is None or timestamp == "":
            raise InvalidEvent("timestamp is required")
        ts = check_timestamp_window(parse_timestamp(timestamp), self.now_ms)
        return _Row(user_id, item_id, event_type, self._value(raw.get("value"), event_type), ts)

    def _value(self, value: Any, event_type: str) -> float:
        if value is None or (self.textual and value.strip() == ""):
            return math.nan
        if self.textual:
            if not _NUMBER.match(value.strip()):
                raise InvalidEvent("value must be a number")
            value = float(value)
        return check_value(value, event_type)


def _item_from_csv(raw: dict[str, str]) -> dict[str, Any]:
    """A CSV row in the JSON form ``validate_item`` takes: extra columns become attributes."""
    item: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, cell in raw.items():
        text = cell.strip()
        if name == "item_id":
            item[name] = cell
        elif name == "categories":
            item[name] = [c for c in (p.strip() for p in text.split(CSV_CATEGORY_SEPARATOR)) if c]
        elif not text:
            continue
        elif name == "title":
            item[name] = cell
        elif name == "available":
            item[name] = _boolean(text)
        elif name == "created_at":
            item[name] = text
        elif name == "attributes":
            parsed = loads_strict(text)
            if not isinstance(parsed, dict):
                raise InvalidItem("attributes must be a flat JSON object")
            attributes.update(parsed)
        else:
            attributes[name] = float(text) if _NUMBER.match(text) else text
    if attributes:
        item["attributes"] = attributes
    return item


def _boolean(text: str) -> bool | str:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return text  # validate_item refuses it with its own message


def _item_from_json(raw: Any) -> Any:
    """A JSONL row as ``validate_item`` takes it: null optional fields are absent."""
    if not isinstance(raw, dict):
        return raw
    item = {k: v for k, v in raw.items() if v is not None or k in ("item_id", "categories")}
    if "item_id" in item:
        item["item_id"] = _id_text(item["item_id"])
    return item


def _item_from_parquet(raw: dict[str, Any]) -> Any:
    """A Parquet row: also ``categories`` / ``attributes`` stored as JSON text are decoded."""
    item = _item_from_json(raw)
    for name in ("categories", "attributes"):
        if isinstance(item.get(name), str):
            item[name] = loads_strict(item[name])
    return item


_ITEM_FORMS: dict[str, Callable[[Any], Any]] = {
    "jsonl": _item_from_json,
    "csv": _item_from_csv,
    "parquet": _item_from_parquet,
}


# ---------- the adapter ----------


@dataclass
class FileAdapter:
    """Interactions and items from files; see the module docstring for the columns and the rules.

    ``now_ms`` bounds timestamps (now + 5 min, as the API does; default: the clock at ``load``);
    ``default_created_at_ms`` is the ``created_at`` of items without one.
    """

    interactions_path: Path
    items_path: Path
    name: str | None = None
    skip_invalid: bool = False
    now_ms: int | None = None
    default_created_at_ms: int = 0

    def __post_init__(self) -> None:
        self.interactions_path = Path(self.interactions_path)
        self.items_path = Path(self.items_path)
        for path in (self.interactions_path, self.items_path):
            format_of(path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")

    def load(self) -> Dataset:
        skipped: dict[str, int] = {}
        items = read_items(self.items_path, self.skip_invalid, self.default_created_at_ms, skipped)
        interactions = read_interactions(self.interactions_path, self.now_ms, self.skip_invalid, skipped)
        return Dataset(
            name=self.name or self.interactions_path.resolve().parent.name,
            interactions=interactions,
            items=items,
            fingerprint=fingerprint_of({"interactions": self.interactions_path, "items": self.items_path}),
            skipped_rows=skipped,
        )


class _Skipper:
    """Raises a row's error, or (``skip_invalid``) counts it per file role and logs the first few."""

    def __init__(self, skip_invalid: bool, skipped: dict[str, int]) -> None:
        self.skip_invalid = skip_invalid
        self.skipped = skipped

    def __call__(self, error: InvalidRow, role: str) -> None:
        if not self.skip_invalid:
            raise error
        self.skipped[role] = self.skipped.get(role, 0) + 1
        if self.skipped[role] <= LOGGED_ERRORS:
            log.warning("skipped invalid row %s", error)


def read_items(
    path: Path,
    skip_invalid: bool = False,
    default_created_at_ms: int | None = None,
    skipped: dict[str, int] | None = None,
) -> list[CatalogItem]:
    """The items of one file, each validated by ``rtrec.catalog.validate_item``; a repeated id is an error.

    ``default_created_at_ms`` is the ``created_at`` of rows without one; None means now (the clock),
    as the admin API does for an item it receives (``FileAdapter`` passes 0 instead). Skipped rows are
    counted in ``skipped["items"]`` when a dict is given.
    """
    path = Path(path)
    form = format_of(path)
    default = default_created_at_ms if default_created_at_ms is not None else int(time.time() * 1000)
    skip = _Skipper(skip_invalid, skipped if skipped is not None else {})
    items: list[CatalogItem] = []
    first_seen: dict[str, str] = {}
    for where, raw in _READERS[form](path):
        try:
            if isinstance(raw, _Broken):
                raise InvalidItem(raw.reason)
            item = validate_item(_ITEM_FORMS[form](raw), now_ms=default)
            if item.item_id in first_seen:
                raise InvalidItem(f"item_id {item.item_id!r} repeats ({first_seen[item.item_id]})")
        except (InvalidItem, InvalidEvent) as error:
            skip(InvalidRow(path, where, str(error)), "items")
            continue
        first_seen[item.item_id] = where
        items.append(item)
    return items


def read_interactions(
    path: Path,
    now_ms: int | None = None,
    skip_invalid: bool = False,
    skipped: dict[str, int] | None = None,
) -> InteractionColumns:
    """The interactions of one file in file order, each row checked with the API's event rules.

    ``now_ms`` bounds timestamps (now + 5 min; None: the clock). Skipped rows are counted in
    ``skipped["interactions"]`` when a dict is given.
    """
    path = Path(path)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    validate = _InteractionValidator(now, textual=format_of(path) == "csv")
    skip = _Skipper(skip_invalid, skipped if skipped is not None else {})
    users: list[str] = []
    item_ids: list[str] = []
    types: list[str] = []
    values: list[float] = []
    stamps: list[int] = []
    for where, raw in _READERS[format_of(path)](path):
        try:
            row = validate(raw)
        except InvalidEvent as error:
            skip(InvalidRow(path, where, str(error)), "interactions")
            continue
        users.append(row.user_id)
        item_ids.append(row.item_id)
        types.append(row.type)
        values.append(row.value)
        stamps.append(row.timestamp_ms)
    return InteractionColumns(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(item_ids, dtype=object),
        types=np.array(types, dtype=object),
        values=np.array(values, dtype=np.float32),
        timestamps_ms=np.array(stamps, dtype=np.int64),
    )


INTERACTIONS_STEM = "interactions"
ITEMS_STEM = "items"


def find_data_files(directory: Path) -> tuple[Path, Path]:
    """``interactions.*`` and ``items.*`` in ``directory`` (exactly one supported file of each)."""
    directory = Path(directory)
    found: list[Path] = []
    for stem in (INTERACTIONS_STEM, ITEMS_STEM):
        matches = sorted(p for p in directory.iterdir() if p.is_file() and _is_data_file(p, stem))
        if len(matches) != 1:
            names = ", ".join(stem + suffix for suffix in FORMATS)
            what = "none" if not matches else ", ".join(p.name for p in matches)
            raise FileNotFoundError(f"{directory}: expected exactly one of {names}; found {what}")
        found.append(matches[0])
    return found[0], found[1]


def _is_data_file(path: Path, stem: str) -> bool:
    return any(path.name.lower() == stem + suffix for suffix in FORMATS)
