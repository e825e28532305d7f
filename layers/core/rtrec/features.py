"""Feature encoding shared by the offline model build and the serving Lambdas.

This is the only place that decides how a user's history becomes model input,
so training (model_build/) and serving (functions/) cannot drift apart.
It depends on numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating", "skip")

# Length of the history the model sees (most recent last, left-padded).
SEQUENCE_LENGTH = 50
PAD_INDEX = 0

# Tensor names of the model's serving signature: the Keras model is built with
# them and the scorer looks its inputs and outputs up by them.
INPUT_ITEMS = "items"
INPUT_SIGNALS = "signals"
INPUT_CANDIDATES = "candidates"
OUTPUT_SCORES = "scores"
OUTPUT_INTERESTS = "interests"
OUTPUT_USER_VECTOR = "user_vector"

# A history step carries a signal strength 1..5 besides the item. The training
# data holds only star ratings, so every other event type is mapped onto the
# star scale it most resembles; that way the serving path never feeds the model
# a token it has not been trained on.
NUM_SIGNALS = 6  # 0 = padding, 1..5 = strength
_SIGNAL_OF_EVENT_TYPE: dict[str, int] = {
    "skip": 1,
    "view": 3,
    "click": 4,
    "add_to_cart": 4,
    "purchase": 5,
}
_DEFAULT_RATING_SIGNAL = 4


def signal_index(event_type: str, value: float | None = None) -> int:
    """Map an event (type, optional rating value) to a signal token in 1..5."""
    if event_type == "rating":
        if value is None:
            return _DEFAULT_RATING_SIGNAL
        return int(min(5, max(1, round(float(value)))))
    return _SIGNAL_OF_EVENT_TYPE.get(event_type, 3)


@dataclass(frozen=True)
class HistoryStep:
    """One interaction as the encoder sees it."""

    item_id: str
    event_type: str
    value: float | None = None


@dataclass
class Catalog:
    """The item table written by the model build: ids, categories and popularity.

    Item index 0 is padding; known items have indices 1..len(item_ids). ``categories`` is the
    vocabulary the model was trained with (from the data: any names, any number); an item's
    ``category_ids`` index into it, and the interest head predicts a distribution over it.
    """

    item_ids: list[str]
    category_ids: list[list[int]]
    popularity: NDArray[np.float32]
    categories: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        self.popularity = np.asarray(self.popularity, dtype=np.float32)
        self.categories = tuple(self.categories)
        if len(self.category_ids) != len(self.item_ids):
            raise ValueError("category_ids must be parallel to item_ids")
        if any(c < 0 or c >= len(self.categories) for ids in self.category_ids for c in ids):
            raise ValueError("a category id is outside the vocabulary")

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def category_index(self) -> dict[str, int]:
        """Category name -> its position in the vocabulary."""
        return {name: i for i, name in enumerate(self.categories)}

    def index_of(self, item_id: str) -> int:
        """Model index of an item, or PAD_INDEX when the model does not know it."""
        return self._index.get(str(item_id), PAD_INDEX)

    def item_at(self, index: int) -> str:
        """Item id of a model index (1-based)."""
        return self.item_ids[index - 1]

    def categories_of(self, item_id: str) -> list[str]:
        """Category names of an item; empty for an unknown item."""
        index = self.index_of(item_id)
        if index == PAD_INDEX:
            return []
        return [self.categories[c] for c in self.category_ids[index - 1]]

    def category_matrix(self) -> NDArray[np.float32]:
        """Multi-hot categories, shape (len(catalog) + 1, len(categories)); row 0 is padding."""
        matrix = np.zeros((len(self) + 1, len(self.categories)), dtype=np.float32)
        for row, ids in enumerate(self.category_ids, start=1):
            matrix[row, ids] = 1.0
        return matrix

    def to_json(self) -> dict[str, Any]:
        """The serialised form stored as items.json in the model artifact."""
        return {
            "categories": list(self.categories),
            "item_ids": self.item_ids,
            "category_ids": self.category_ids,
            "popularity": [float(p) for p in self.popularity],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        """Read items.json; artifacts built before categories were data name them genres."""
        vocabulary = data["categories"] if "categories" in data else data["genres"]
        ids = data["category_ids"] if "category_ids" in data else data["genre_ids"]
        return cls(
            item_ids=[str(i) for i in data["item_ids"]],
            category_ids=[[int(c) for c in g] for g in ids],
            popularity=np.asarray(data["popularity"], dtype=np.float32),
            categories=tuple(str(c) for c in vocabulary),
        )

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """Read items.json (or the artifact folder that holds it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "items.json"
        return cls.from_json(json.loads(path.read_text()))


def encode_history(
    steps: Iterable[HistoryStep],
    catalog: Catalog,
    length: int = SEQUENCE_LENGTH,
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Encode a history (oldest first) as (item indices, signal indices), each int32[length].

    Items the catalog does not know are dropped from the model input (they stay
    in the user's state); the newest `length` known steps are kept, newest last,
    left-padded with PAD_INDEX.
    """
    items: list[int] = []
    signals: list[int] = []
    for step in steps:
        index = catalog.index_of(step.item_id)
        if index == PAD_INDEX:
            continue
        items.append(index)
        signals.append(signal_index(step.event_type, step.value))
    return _left_pad(items[-length:], length), _left_pad(signals[-length:], length)


def _left_pad(values: Sequence[int], length: int) -> NDArray[np.int32]:
    out = np.full(length, PAD_INDEX, dtype=np.int32)
    if values:
        out[length - len(values) :] = values
    return out
