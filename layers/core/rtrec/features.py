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

# MovieLens-100k genre vocabulary, in the dataset's own order. The interest head
# predicts a distribution over exactly these, and the state fold keys its
# decayed interest scores by these names.
GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
GENRE_INDEX: dict[str, int] = {name: i for i, name in enumerate(GENRES)}

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
    """The item table written by the model build: ids, genres and popularity.

    Item index 0 is padding; known items have indices 1..len(item_ids).
    """

    item_ids: list[str]
    genre_ids: list[list[int]]
    popularity: NDArray[np.float32]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        self.popularity = np.asarray(self.popularity, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.item_ids)

    def index_of(self, item_id: str) -> int:
        """Model index of an item, or PAD_INDEX when the model does not know it."""
        return self._index.get(str(item_id), PAD_INDEX)

    def item_at(self, index: int) -> str:
        """Item id of a model index (1-based)."""
        return self.item_ids[index - 1]

    def genres_of(self, item_id: str) -> list[str]:
        """Genre names of an item; empty for an unknown item."""
        index = self.index_of(item_id)
        if index == PAD_INDEX:
            return []
        return [GENRES[g] for g in self.genre_ids[index - 1]]

    def genre_matrix(self) -> NDArray[np.float32]:
        """Multi-hot genres, shape (len(catalog) + 1, len(GENRES)); row 0 is padding."""
        matrix = np.zeros((len(self) + 1, len(GENRES)), dtype=np.float32)
        for row, genres in enumerate(self.genre_ids, start=1):
            matrix[row, genres] = 1.0
        return matrix

    def to_json(self) -> dict[str, Any]:
        """The serialised form stored as items.json in the model artifact."""
        return {
            "genres": list(GENRES),
            "item_ids": self.item_ids,
            "genre_ids": self.genre_ids,
            "popularity": [float(p) for p in self.popularity],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        if list(data["genres"]) != list(GENRES):
            raise ValueError("catalog genre vocabulary does not match rtrec.features.GENRES")
        return cls(
            item_ids=[str(i) for i in data["item_ids"]],
            genre_ids=[list(g) for g in data["genre_ids"]],
            popularity=np.asarray(data["popularity"], dtype=np.float32),
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
