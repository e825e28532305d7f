"""The adapter interface: every data source becomes one ``Dataset`` (interactions + catalog).

``model_build`` and the tools read data only through a ``DataAdapter``: MovieLens-100k
(``dataio.movielens.MovieLensAdapter``), files in JSON Lines, CSV or Parquet (``dataio.files.FileAdapter``),
and through the latter the generated e-commerce shape (``dataio.synthetic``).

Interactions are columns (numpy arrays of equal length) in the source's order; ``time_order`` and
``sorted_by_time`` order them by timestamp with a stable sort, so the source order breaks ties.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rtrec.catalog import CatalogItem, vocabulary_of
from rtrec.features import EVENT_TYPES


@dataclass(frozen=True, eq=False)
class InteractionColumns:
    """Interactions as columns, one row per event.

    ``user_ids``, ``item_ids``, ``types``: object arrays of ``str`` (types: ``rtrec.features.EVENT_TYPES``);
    ``values``: float32, NaN where the event has no value; ``timestamps_ms``: int64 epoch milliseconds.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    types: np.ndarray
    values: np.ndarray
    timestamps_ms: np.ndarray

    def __post_init__(self) -> None:
        coerced = {
            "user_ids": np.asarray(self.user_ids, dtype=object),
            "item_ids": np.asarray(self.item_ids, dtype=object),
            "types": np.asarray(self.types, dtype=object),
            "values": np.asarray(self.values, dtype=np.float32),
            "timestamps_ms": np.asarray(self.timestamps_ms, dtype=np.int64),
        }
        lengths = {name: column.shape for name, column in coerced.items()}
        if len(set(lengths.values())) != 1 or len(coerced["user_ids"].shape) != 1:
            raise ValueError(f"interaction columns must be 1-d and of equal length, got {lengths}")
        unknown = (
            set(np.unique(coerced["types"]).tolist()) - set(EVENT_TYPES) if len(coerced["types"]) else set()
        )
        if unknown:
            raise ValueError(f"unknown event type(s) {sorted(map(str, unknown))}; expected {EVENT_TYPES}")
        for name, column in coerced.items():
            object.__setattr__(self, name, column)

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def empty(cls) -> InteractionColumns:
        return cls(*(np.array([], dtype=object) for _ in range(3)), np.array([]), np.array([]))

    def take(self, rows: np.ndarray) -> InteractionColumns:
        """The rows at ``rows`` (indices or a boolean mask), in that order."""
        return InteractionColumns(
            user_ids=self.user_ids[rows],
            item_ids=self.item_ids[rows],
            types=self.types[rows],
            values=self.values[rows],
            timestamps_ms=self.timestamps_ms[rows],
        )

    def time_order(self) -> np.ndarray:
        """Row positions ordered by timestamp; a stable sort keeps the source order for ties."""
        return np.argsort(self.timestamps_ms, kind="stable")

    def sorted_by_time(self) -> InteractionColumns:
        return self.take(self.time_order())

    def user_sequences(self) -> dict[str, np.ndarray]:
        """Row positions per user in time order (ties: source order); users in order of their first event."""
        order = self.time_order()
        codes: dict[str, int] = {}
        user_code = np.fromiter(
            (codes.setdefault(user, len(codes)) for user in self.user_ids[order].tolist()),
            dtype=np.int64,
            count=len(order),
        )
        grouped = order[np.argsort(user_code, kind="stable")]
        counts = np.bincount(user_code, minlength=len(codes))
        ends = np.cumsum(counts)
        return {
            user: grouped[end - count : end]
            for user, count, end in zip(codes, counts.tolist(), ends.tolist(), strict=True)
        }


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data source, loaded: interactions, the catalog, and a fingerprint of the sources.

    ``fingerprint`` is a sha256 identifying the source files (or the pinned download), for manifests.
    ``skipped_rows`` counts rows an adapter skipped as invalid (only with ``skip_invalid``), per file role.
    ``vocabulary`` is a source's own category order, when it has one (MovieLens' genre order, which the
    committed model's category ids follow); None for first-seen order.
    """

    name: str
    interactions: InteractionColumns
    items: list[CatalogItem]
    fingerprint: str
    skipped_rows: Mapping[str, int] = field(default_factory=dict)
    vocabulary: tuple[str, ...] | None = None

    @property
    def categories(self) -> list[str]:
        """The category vocabulary: ``vocabulary`` if given, then the items' categories, first seen first."""
        seen = vocabulary_of(self.items)
        if self.vocabulary is None:
            return seen
        return list(dict.fromkeys([*self.vocabulary, *seen]))

    def item_index(self) -> dict[str, int]:
        """item_id -> position in ``items``."""
        return {item.item_id: i for i, item in enumerate(self.items)}

    def sorted_by_time(self) -> Dataset:
        """The same dataset with its interactions in time order (stable: ties keep source order)."""
        return Dataset(
            name=self.name,
            interactions=self.interactions.sorted_by_time(),
            items=self.items,
            fingerprint=self.fingerprint,
            skipped_rows=self.skipped_rows,
            vocabulary=self.vocabulary,
        )

    def unknown_item_rows(self) -> np.ndarray:
        """Boolean mask of interactions whose item is not in the catalog."""
        known = {item.item_id for item in self.items}  # a set: np.isin on object arrays is quadratic
        item_ids = self.interactions.item_ids.tolist()
        return np.fromiter((item_id not in known for item_id in item_ids), dtype=bool, count=len(item_ids))

    def summary(self) -> dict[str, Any]:
        """Counts for logs and manifests."""
        inter = self.interactions
        types, counts = np.unique(inter.types, return_counts=True) if len(inter) else ([], [])
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "interactions": len(inter),
            "users": len(set(inter.user_ids.tolist())),
            "items": len(self.items),
            "categories": len(self.categories),
            "types": {str(t): int(c) for t, c in zip(types, counts, strict=True)},
            "first_ms": int(inter.timestamps_ms.min()) if len(inter) else None,
            "last_ms": int(inter.timestamps_ms.max()) if len(inter) else None,
            "unknown_item_interactions": int(self.unknown_item_rows().sum()) if len(inter) else 0,
            "skipped_rows": dict(self.skipped_rows),
        }


@runtime_checkable
class DataAdapter(Protocol):
    """Anything that loads a ``Dataset``."""

    def load(self) -> Dataset: ...


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_of(sources: Mapping[str, Path] | Iterable[tuple[str, Path]]) -> str:
    """sha256 over ``role:sha256(file)`` lines (roles: ``interactions``, ``items``), in the given order.

    File names do not enter it: the same bytes under another name give the same fingerprint.
    """
    pairs = sources.items() if isinstance(sources, Mapping) else sources
    digest = hashlib.sha256()
    for role, path in pairs:
        digest.update(f"{role}:{sha256_file(Path(path))}\n".encode())
    return digest.hexdigest()
