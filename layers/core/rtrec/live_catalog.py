"""The catalog as serving sees it: the model's items, overlaid by the catalog table's live view.

The model artifact knows a fixed set of items (indices 1..n). The catalog table says which of them
are available now, their current categories and attributes, and which items were added after the
model was trained. A ``LiveCatalog`` follows the table's change feed (a small query every few
seconds, never the whole catalog per request) and exposes both as arrays over one index space:
model items keep their indices, new items get indices after them. The model never saw a new item:
``new_item_vectors`` gives each one a vector from its categories (the model items that share them,
weighted by how much they share), which the scorer retrieves and ranks like the model's own rows,
and ``generation`` tells the recommender when those vectors must be recomputed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rtrec.catalog import CatalogColumns, CatalogItem, ItemFilter
from rtrec.features import Catalog

log = logging.getLogger(__name__)
_GENERATIONS = itertools.count(1)


class ChangeSource(Protocol):
    """What the live catalog needs of the catalog store (``rtrec.stores.catalog.CatalogStore``)."""

    def changes_since(self, updated_after_ms: int) -> Sequence[Any]: ...


class LiveCatalog:
    """The model's catalog plus the table's overlay, refreshed at most every ``refresh_s`` seconds."""

    def __init__(
        self,
        model_catalog: Catalog,
        source: ChangeSource | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        overlap_ms: int = 5000,
    ) -> None:
        self.model = model_catalog
        self.source = source
        self.refresh_s = refresh_s
        self.clock = clock
        # Writes land with the writer's clock; asking again for the last few seconds catches a write
        # whose updated_at is a little older than one already seen (the feed is idempotent to re-read).
        self.overlap_ms = overlap_ms
        self._overlay: dict[str, CatalogItem] = {}
        self._deleted: set[str] = set()
        self._watermark = 0
        self._last_refresh: float | None = None
        self.refresh_failures = 0
        # New at every rebuild, and unique across instances (a recommender may be given another live
        # catalog): whoever derives arrays from the index space (the new items' vectors) recomputes
        # them once per change instead of once per request.
        self.generation = 0
        self._rebuild()

    # ---------- index space ----------

    @property
    def model_size(self) -> int:
        return len(self.model)

    def __len__(self) -> int:
        return self.model_size + len(self._new_ids)

    def item_at(self, index: int) -> str:
        """The item id of an index (model items first, then new items)."""
        if index <= self.model_size:
            return self.model.item_at(index)
        return self._new_ids[index - self.model_size - 1]

    def index_of(self, item_id: str) -> int:
        """The index of an item id, 0 when unknown or deleted."""
        index = self.model.index_of(item_id)
        if index:
            return index if item_id not in self._deleted else 0
        return self._new_index.get(item_id, 0)

    def categories_at(self, index: int) -> list[str]:
        return list(self._items[index - 1].categories) if index >= 1 else []

    def item(self, index: int) -> CatalogItem:
        return self._items[index - 1]

    def new_indices(self) -> NDArray[np.int64]:
        """Indices of the items the model does not know."""
        return np.arange(self.model_size + 1, len(self) + 1, dtype=np.int64)

    def sharing_categories(self, index: int) -> NDArray[np.int64]:
        """Indices of the items that share at least one category with ``index`` (itself excluded)."""
        row = self._columns.category_matrix[index]
        if not row.any():
            return np.zeros(0, dtype=np.int64)
        shared = self._columns.category_matrix[:, row].any(axis=1)
        shared[index] = False
        return np.flatnonzero(shared).astype(np.int64)

    def new_category_ids(self) -> list[list[int]]:
        """Per new item (in ``new_indices`` order): its categories as column ids of the live vocabulary.

        The live vocabulary starts with the model's, so a category the model knows keeps its model id.
        """
        matrix = self._columns.category_matrix
        return [np.flatnonzero(matrix[index]).tolist() for index in self.new_indices()]

    def new_item_vectors(
        self,
        model_vectors: NDArray[Any],
        popularity: NDArray[Any] | None = None,
        power: float = 4.0,
        keep_norm: bool = True,
    ) -> NDArray[np.float32]:
        """A vector per new item (rows in ``new_indices`` order) from the model items' vectors.

        A new item's vector is the mean of the vectors of the model items that share a category with it,
        each weighted by (shared / union of the two category sets) ** ``power`` (items with the same
        category set count most) and, given the model items' training ``popularity``, by it: the vectors
        of items hardly anyone rated are barely trained, and what a new item will be like is best told by
        the items of its kind that people did take. With ``keep_norm`` the mean is scaled to the weighted
        mean length of those vectors, since averaging shrinks it and the head's dot product would rank
        every new item below the items it was made of. (The choice: evaluation/new_items.py, offline
        table.) An item sharing no category with any model item gets a zero vector. ``model_vectors`` is
        ``[model_size + 1, D]`` (row 0 padding); new items with the same category set share one mean.
        """
        vectors = np.asarray(model_vectors, dtype=np.float32)
        new = self.new_indices()
        out = np.zeros((new.size, vectors.shape[1]), dtype=np.float32)
        if not new.size:
            return out
        matrix = self._columns.category_matrix
        model_rows = matrix[1 : self.model_size + 1]
        per_item = model_rows.sum(axis=1)
        counts = None if popularity is None else np.asarray(popularity, dtype=np.float64).reshape(-1)
        columns, items = np.nonzero(model_rows.T)  # model items per category, one category after another
        starts = np.searchsorted(columns, np.arange(matrix.shape[1] + 1))
        lengths = np.linalg.norm(vectors[1:], axis=1)
        by_categories: dict[tuple[int, ...], NDArray[np.float32]] = {}
        for row, index in enumerate(new.tolist()):
            key = tuple(np.flatnonzero(matrix[index]).tolist())
            if key not in by_categories:
                members = np.concatenate([items[starts[c] : starts[c + 1]] for c in key] or [items[:0]])
                centroid = np.zeros(vectors.shape[1], dtype=np.float32)
                if members.size:
                    sharing, shared = np.unique(members, return_counts=True)
                    weights = (shared / (per_item[sharing] + len(key) - shared)) ** power
                    if counts is not None and (weights * counts[sharing]).sum() > 0:
                        weights = weights * counts[sharing]
                    centroid = (weights @ vectors[sharing + 1] / weights.sum()).astype(np.float32)
                    length = float(np.linalg.norm(centroid))
                    if keep_norm and length > 0:
                        centroid *= np.float32(float(weights @ lengths[sharing]) / weights.sum() / length)
                by_categories[key] = centroid
            out[row] = by_categories[key]
        return out

    def category_overlap(self, index: int) -> NDArray[np.float64]:
        """Per item: the share of ``index``'s categories it carries (0..1)."""
        row = self._columns.category_matrix[index]
        count = int(row.sum())
        if not count:
            return np.zeros(len(self._columns.available), dtype=np.float64)
        shared: NDArray[np.float64] = self._columns.category_matrix[:, row].sum(axis=1) / count
        return shared

    # ---------- filters ----------

    def mask(self, item_filter: ItemFilter | None = None) -> NDArray[np.bool_]:
        """Over every index (0..len): available and passing ``item_filter``."""
        mask = self._columns.available.copy()
        if item_filter is not None and not item_filter.empty:
            mask &= self._columns.mask(item_filter)
        return mask

    def newest_first(self, indices: NDArray[np.int64]) -> NDArray[np.int64]:
        """``indices`` ordered by created_at, newest first (ties by index)."""
        created = self._columns.created_at[indices]
        order: NDArray[np.int64] = indices[np.lexsort((indices, -created))]
        return order

    # ---------- following the table ----------

    def maybe_refresh(self) -> bool:
        """Pull the changes when the last pull is older than ``refresh_s``; True when anything changed."""
        now = self.clock()
        if self.source is None or (
            self._last_refresh is not None and now - self._last_refresh < self.refresh_s
        ):
            return False
        self._last_refresh = now
        return self.refresh()

    def refresh(self) -> bool:
        """Pull the changes since the watermark now; on failure keep serving what is known."""
        if self.source is None:
            return False
        try:
            changes = list(self.source.changes_since(max(0, self._watermark - self.overlap_ms)))
        except Exception as error:  # the catalog table being unreachable must not fail an answer
            self.refresh_failures += 1
            log.warning("catalog refresh failed: %s: %s", type(error).__name__, error)
            return False
        changed = False
        for change in sorted(changes, key=lambda c: c.updated_at):
            item_id = change.item.item_id
            self._watermark = max(self._watermark, change.updated_at)
            if change.deleted:
                changed |= item_id not in self._deleted
                self._deleted.add(item_id)
                self._overlay.pop(item_id, None)
            elif self._overlay.get(item_id) != change.item or item_id in self._deleted:
                self._deleted.discard(item_id)
                self._overlay[item_id] = change.item
                changed = True
        if changed:
            self._rebuild()
        return changed

    def _rebuild(self) -> None:
        model_items: list[CatalogItem] = []
        for index, item_id in enumerate(self.model.item_ids, start=1):
            overlay = self._overlay.get(item_id)
            if overlay is not None:
                model_items.append(overlay)
            else:
                categories = tuple(self.model.categories[c] for c in self.model.category_ids[index - 1])
                model_items.append(CatalogItem(item_id, categories, available=item_id not in self._deleted))
        known = set(self.model.item_ids)
        self._new_ids = sorted(i for i in self._overlay if i not in known)
        self._new_index = {item_id: self.model_size + 1 + n for n, item_id in enumerate(self._new_ids)}
        self._items = model_items + [self._overlay[i] for i in self._new_ids]
        vocabulary = list(
            dict.fromkeys([*self.model.categories, *(c for item in self._items for c in item.categories)])
        )
        self._columns = CatalogColumns(self._items, vocabulary)
        self.generation = next(_GENERATIONS)
