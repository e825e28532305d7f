"""Splits and training examples from any dataset read through ``dataio`` (``dataio.adapter_for(spec)``).

Every interaction is one history step ``HistoryStep(item_id, type, value)``, encoded by
``rtrec.features.encode_history`` (so its signal is ``rtrec.features.signal_index(type, value)``), exactly
as the serving path encodes a user's recent events.

Targets are *new* items: the first interaction of a user with an item. The API never recommends an item
the user has already interacted with, so a repeat (a click after the view of the same item, a purchase
after the add-to-cart) is history, never something to predict. Splits are leave-one-out over a user's new
items in time order: the last new item = test, the second last = validation, every interaction before
the validation one = train; a stable sort lets the source order break ties between interactions that
share a timestamp. In a dataset without repeats (MovieLens: one rating per user and movie) every
interaction is a new item, and this is the plain leave-one-out of the last two interactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtrec.features import Catalog, HistoryStep, encode_history

if TYPE_CHECKING:
    from dataio.dataset import Dataset

WORK_DIR = Path(__file__).resolve().parent / ".work"
DEFAULT_DATA = "movielens"
TIME_CUTOFF_QUANTILE = 0.8
INTEREST_HORIZON = 3  # the interest head learns the categories of the next few items, not just the next one


def load_dataset(spec: str = DEFAULT_DATA) -> Dataset:
    """The dataset a data spec names (``movielens``, ``ecommerce`` or a directory; see ``dataio``)."""
    from dataio import adapter_for

    return adapter_for(spec).load()


def as_dataset(data: Any) -> Dataset:
    """``data`` as a ``Dataset``; the older MovieLens-only ``dataio.movielens.Interactions`` is converted."""
    from dataio.dataset import Dataset

    if isinstance(data, Dataset):
        return data
    from dataio.movielens import as_dataset as movielens_dataset  # a caller still on the older type

    return movielens_dataset(data, fingerprint="")


def time_cutoff_ms(data: Any, quantile: float = TIME_CUTOFF_QUANTILE) -> int:
    """Global timestamp cutoff (epoch ms) for a streaming replay: events at or before it are 'history'."""
    return int(np.quantile(as_dataset(data).interactions.timestamps_ms, quantile, method="lower"))


@dataclass
class UserSplit:
    """One user's interactions in time order, split leave-one-out over the user's new items.

    ``train`` is every interaction before ``valid``; ``between`` holds the interactions after ``valid``
    and before ``test`` (repeats of items already seen, empty without repeats). Timestamps are epoch ms.
    """

    user_id: str
    train: list[HistoryStep]
    valid: HistoryStep
    test: HistoryStep
    train_timestamps: list[int]
    valid_timestamp: int
    test_timestamp: int
    between: list[HistoryStep] = field(default_factory=list)
    between_timestamps: list[int] = field(default_factory=list)

    @property
    def test_history(self) -> list[HistoryStep]:
        """Everything before the test interaction: train, validation and what came between."""
        return [*self.train, self.valid, *self.between]


def new_item_positions(steps: Sequence[HistoryStep]) -> list[int]:
    """Positions of the steps whose item appears there for the first time."""
    seen: set[str] = set()
    positions = []
    for position, step in enumerate(steps):
        if step.item_id not in seen:
            seen.add(step.item_id)
            positions.append(position)
    return positions


def leave_one_out(data: Any) -> list[UserSplit]:
    """Last new item = test, second last = validation, everything before it = train.

    Users with fewer than 3 new items are skipped; interactions with items outside the catalog are
    dropped first (the encoder could not feed them to the model anyway). Users come in the order of
    their first interaction in time.
    """
    dataset = as_dataset(data)
    columns = dataset.interactions
    known = ~dataset.unknown_item_rows() if len(columns) else np.zeros(0, dtype=bool)
    if not known.all():
        columns = columns.take(known)
    item_ids = columns.item_ids.tolist()
    types = columns.types.tolist()
    values = [None if np.isnan(v) else float(v) for v in columns.values.tolist()]
    stamps_ms = columns.timestamps_ms.tolist()
    splits: list[UserSplit] = []
    for user_id, rows in columns.user_sequences().items():
        steps = [HistoryStep(str(item_ids[r]), str(types[r]), values[r]) for r in rows.tolist()]
        new = new_item_positions(steps)
        if len(new) < 3:
            continue
        valid, test = new[-2], new[-1]
        stamps = [int(stamps_ms[r]) for r in rows.tolist()]
        splits.append(
            UserSplit(
                user_id=str(user_id),
                train=steps[:valid],
                valid=steps[valid],
                test=steps[test],
                train_timestamps=stamps[:valid],
                valid_timestamp=stamps[valid],
                test_timestamp=stamps[test],
                between=steps[valid + 1 : test],
                between_timestamps=stamps[valid + 1 : test],
            )
        )
    return splits


def build_catalog(data: Any, splits: Iterable[UserSplit]) -> Catalog:
    """Item table over every catalogue item, in the dataset's item order, with the dataset's vocabulary.

    Popularity counts training interactions only (every one, repeats included).
    """
    dataset = as_dataset(data)
    categories = tuple(dataset.categories)
    category_index = {name: i for i, name in enumerate(categories)}
    catalog = Catalog(
        item_ids=[item.item_id for item in dataset.items],
        category_ids=[sorted({category_index[c] for c in item.categories}) for item in dataset.items],
        popularity=np.zeros(len(dataset.items), dtype=np.float32),
        categories=categories,
    )
    counts = np.zeros(len(catalog), dtype=np.float32)
    for split in splits:
        for step in split.train:
            index = catalog.index_of(step.item_id)
            if index:
                counts[index - 1] += 1
    catalog.popularity = counts
    return catalog


@dataclass
class Examples:
    """Model inputs and targets: one row per predicted interaction."""

    items: np.ndarray  # int32 [n, SEQUENCE_LENGTH]
    signals: np.ndarray  # int32 [n, SEQUENCE_LENGTH]
    targets: np.ndarray  # int32 [n], catalog index of the next new item
    interest_targets: np.ndarray  # float32 [n, categories], category distribution of the next items
    seen: list[np.ndarray]  # catalog indices already in the history (for exclusion)
    futures: np.ndarray  # int32 [n, INTEREST_HORIZON], the next new items (first = target), 0 = none


def _category_distribution(category_matrix: np.ndarray, indices: list[int]) -> np.ndarray:
    rows = category_matrix[indices]
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    total = rows.sum(axis=0)
    return (total / max(total.sum(), 1e-9)).astype(np.float32)


class _Encoder:
    """Collects encoded rows: (history window, whole-history indices, future steps)."""

    def __init__(self, catalog: Catalog, length: int) -> None:
        self.catalog = catalog
        self.length = length
        self.category_matrix = catalog.category_matrix()
        self.items: list[np.ndarray] = []
        self.signals: list[np.ndarray] = []
        self.targets: list[int] = []
        self.interest: list[np.ndarray] = []
        self.seen: list[np.ndarray] = []
        self.futures: list[list[int]] = []

    def add(self, window: Sequence[HistoryStep], history_indices: np.ndarray, future: list[HistoryStep]):
        encoded_items, encoded_signals = encode_history(window, self.catalog, self.length)
        self.items.append(encoded_items)
        self.signals.append(encoded_signals)
        future_idx = [self.catalog.index_of(s.item_id) for s in future]
        self.targets.append(future_idx[0])
        self.futures.append((future_idx + [0] * INTEREST_HORIZON)[:INTEREST_HORIZON])
        self.interest.append(_category_distribution(self.category_matrix, future_idx))
        self.seen.append(np.unique(history_indices).astype(np.int32))

    def examples(self) -> Examples:
        categories = len(self.catalog.categories)
        return Examples(
            items=np.stack(self.items) if self.items else np.zeros((0, self.length), np.int32),
            signals=np.stack(self.signals) if self.signals else np.zeros((0, self.length), np.int32),
            targets=np.asarray(self.targets, dtype=np.int32),
            interest_targets=(
                np.stack(self.interest) if self.interest else np.zeros((0, categories), np.float32)
            ),
            seen=self.seen,
            futures=np.asarray(self.futures, dtype=np.int32).reshape(-1, INTEREST_HORIZON),
        )


def _indices(catalog: Catalog, steps: Sequence[HistoryStep]) -> np.ndarray:
    return np.fromiter((catalog.index_of(s.item_id) for s in steps), dtype=np.int64, count=len(steps))


def training_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """Every new item at train position t >= 1 of every user: history = train[:t], target = train[t].

    The futures are the next INTEREST_HORIZON new items of the train part. Only the training part is
    used, so validation and test items never reach training features. The model sees the last
    ``length`` steps; ``seen`` holds the whole history (the loss masks it).
    """
    encoder = _Encoder(catalog, length)
    for split in splits:
        indices = _indices(catalog, split.train)
        new = [t for t in new_item_positions(split.train) if t >= 1]
        for n, t in enumerate(new):
            future = [split.train[p] for p in new[n : n + INTEREST_HORIZON]]
            encoder.add(split.train[max(0, t - length) : t], indices[:t], future)
    return encoder.examples()


def validation_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """History = train part, target = the validation item (then the test item, for the interests)."""
    encoder = _Encoder(catalog, length)
    for split in splits:
        encoder.add(split.train[-length:], _indices(catalog, split.train), [split.valid, split.test])
    return encoder.examples()


def test_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """History = every interaction before the test one, target = the test item."""
    encoder = _Encoder(catalog, length)
    for split in splits:
        history = split.test_history
        encoder.add(history[-length:], _indices(catalog, history), [split.test])
    return encoder.examples()
