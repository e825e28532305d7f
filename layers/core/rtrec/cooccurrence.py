"""Item-to-item transitions kept with the model: what users went on to after an item.

The model build counts, on the training split, how often item j followed item i within a few steps
(closer steps weigh more), keeps each item's strongest followers with P(j | i) and writes them next
to the model (``cooccurrence.npz``, part of the model's content version). At serving time the
user's last few distinct items vote for their followers (the newest vote weighs most), and
``Scorer.retrieve`` adds ``weight × vote`` to the model's score of each candidate and takes the
followers in as candidates too. The counts capture item pairs directly (for example "bought
together" in a shop) that the model, with a handful of training targets per item, learns only
roughly. Every knob is chosen on the validation split by the build and recorded in the artifact's
``metadata.json`` (``cooccurrence``).

numpy only; the arrays are a compressed sparse row matrix (one row per preceding item).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

COOCCURRENCE_FILE = "cooccurrence.npz"


@dataclass(frozen=True)
class BlendSettings:
    """How the serving path uses the neighbours (chosen on validation by the model build).

    recent: how many of the user's latest distinct items vote; recent_decay: the vote of the
    n-th latest item (0 = newest) is multiplied by recent_decay ** n; weight: what one unit of
    vote adds to a model score (a logit).
    """

    weight: float
    recent: int
    recent_decay: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> BlendSettings | None:
        """The ``serving`` part of metadata.json's ``cooccurrence`` entry; None if absent or off."""
        serving = (metadata.get("cooccurrence") or {}).get("serving")
        if not serving:
            return None
        settings = cls(
            weight=float(serving["weight"]),
            recent=int(serving["recent"]),
            recent_decay=float(serving["recent_decay"]),
        )
        if not (np.isfinite(settings.weight) and settings.weight >= 0):
            raise ValueError("cooccurrence weight must be a finite number >= 0")
        if settings.recent < 1 or not 0 < settings.recent_decay <= 1:
            raise ValueError("cooccurrence recent must be >= 1 and recent_decay in (0, 1]")
        return settings if settings.weight > 0 else None


class ItemNeighbours:
    """Followers of each item: row i (a model index) lists items j with their P(j | i), strongest first."""

    def __init__(self, indptr: NDArray[Any], neighbours: NDArray[Any], weights: NDArray[Any]) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.neighbours = np.asarray(neighbours, dtype=np.int32)
        self.weights = np.asarray(weights, dtype=np.float32)
        if (
            self.indptr.ndim != 1
            or self.indptr.size < 2
            or self.indptr[0] != 0
            or self.indptr[-1] != self.neighbours.size
            or self.neighbours.shape != self.weights.shape
            or (np.diff(self.indptr) < 0).any()
        ):
            raise ValueError("malformed neighbour arrays")
        if self.neighbours.size and (self.neighbours.min() < 1 or self.neighbours.max() > len(self)):
            raise ValueError("a neighbour index is outside the catalogue")

    def __len__(self) -> int:
        """Number of catalogue items (rows 1..N; row 0 is padding)."""
        return int(self.indptr.size) - 2

    @classmethod
    def load(cls, path: str | Path) -> ItemNeighbours:
        with np.load(Path(path)) as arrays:
            return cls(arrays["indptr"], arrays["neighbours"], arrays["weights"])

    def save(self, path: str | Path) -> None:
        with Path(path).open("wb") as handle:
            np.savez_compressed(handle, indptr=self.indptr, neighbours=self.neighbours, weights=self.weights)

    def content_bytes(self) -> bytes:
        """The arrays as bytes, for the artifact's content version."""
        return self.indptr.tobytes() + self.neighbours.tobytes() + self.weights.tobytes()

    def row(self, item: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        start, stop = self.indptr[item], self.indptr[item + 1]
        return self.neighbours[start:stop], self.weights[start:stop]

    def votes(
        self, history: NDArray[Any], recent: int, recent_decay: float
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(candidates, vote) from the latest `recent` distinct items of `history` (newest last, 0 = pad).

        Candidates are sorted and unique; an item of the history may be among them (the caller
        excludes what the user has seen).
        """
        latest: list[int] = []
        for item in np.asarray(history).reshape(-1)[::-1].tolist():
            if item and item not in latest and item <= len(self):
                latest.append(item)
                if len(latest) == recent:
                    break
        if not latest:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        starts, stops = self.indptr[latest], self.indptr[np.asarray(latest) + 1]
        if len(latest) == 1:
            start, stop = int(starts[0]), int(stops[0])
            return self.neighbours[start:stop].astype(np.int64), self.weights[start:stop].copy()
        candidates = np.concatenate([self.neighbours[a:b] for a, b in zip(starts, stops, strict=True)])
        factors = np.repeat(
            np.float32(recent_decay) ** np.arange(len(latest), dtype=np.float32), stops - starts
        )
        values = np.concatenate([self.weights[a:b] for a, b in zip(starts, stops, strict=True)]) * factors
        unique, inverse = np.unique(candidates, return_inverse=True)
        vote = np.bincount(inverse, weights=values, minlength=unique.size).astype(np.float32)
        return unique.astype(np.int64), vote
