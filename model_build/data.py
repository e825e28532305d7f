"""Splits and training examples from interactions (MovieLens-100k through ``dataio.movielens``).

Splits are leave-one-out in time order per user (last = test, second last =
validation, rest = train), sorted stably so that the file order breaks ties
between interactions that share a timestamp.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataio.movielens import (
    DATASET_PREFIX,
    WHEEL_REQUIREMENT,
    Interactions,
    load_movielens,
    time_cutoff,
)
from dataio.movielens import GENRES as MOVIELENS_GENRES
from rtrec.features import Catalog, HistoryStep, encode_history

WORK_DIR = Path(__file__).resolve().parent / ".work"

__all__ = [
    "DATASET_PREFIX",
    "WHEEL_REQUIREMENT",
    "WORK_DIR",
    "Interactions",
    "load_movielens",
    "time_cutoff",
]


@dataclass
class UserSplit:
    """One user's interactions in time order, split leave-one-out."""

    user_id: str
    train: list[HistoryStep]
    valid: HistoryStep
    test: HistoryStep
    train_timestamps: list[int]
    valid_timestamp: int
    test_timestamp: int


def user_sequences(data: Interactions) -> dict[str, list[int]]:
    """Row positions per user, ordered by timestamp; a stable sort keeps file order for ties."""
    order = np.argsort(data.timestamps, kind="stable")
    sequences: dict[str, list[int]] = {}
    for row in order:
        sequences.setdefault(str(data.user_ids[row]), []).append(int(row))
    return sequences


def leave_one_out(data: Interactions) -> list[UserSplit]:
    """Last interaction = test, second last = validation, the rest = train (users with < 3 are skipped)."""
    splits: list[UserSplit] = []
    for user_id, rows in user_sequences(data).items():
        if len(rows) < 3:
            continue
        steps = [HistoryStep(str(data.item_ids[r]), "rating", float(data.ratings[r])) for r in rows]
        stamps = [int(data.timestamps[r]) for r in rows]
        splits.append(
            UserSplit(
                user_id=user_id,
                train=steps[:-2],
                valid=steps[-2],
                test=steps[-1],
                train_timestamps=stamps[:-2],
                valid_timestamp=stamps[-2],
                test_timestamp=stamps[-1],
            )
        )
    return splits


def build_catalog(data: Interactions, splits: Iterable[UserSplit]) -> Catalog:
    """Item table over every catalogue item; popularity counts training interactions only."""
    catalog = Catalog(
        item_ids=list(data.catalog_item_ids),
        category_ids=[list(g) for g in data.catalog_genre_ids],
        popularity=np.zeros(len(data.catalog_item_ids), dtype=np.float32),
        categories=MOVIELENS_GENRES,
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
    targets: np.ndarray  # int32 [n], catalog index of the next item
    interest_targets: np.ndarray  # float32 [n, 19], genre distribution of the next items
    seen: list[np.ndarray]  # catalog indices already in the history (for exclusion)
    futures: np.ndarray  # int32 [n, INTEREST_HORIZON], the next items (first = target), 0 = none


def _genre_distribution(catalog: Catalog, genre_matrix: np.ndarray, indices: list[int]) -> np.ndarray:
    rows = genre_matrix[indices]
    rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
    total = rows.sum(axis=0)
    return (total / max(total.sum(), 1e-9)).astype(np.float32)


def _encode_many(
    catalog: Catalog, histories: list[list[HistoryStep]], targets: list[list[HistoryStep]], length: int
) -> Examples:
    genre_matrix = catalog.category_matrix()
    items, signals, target_idx, interest, seen, futures = [], [], [], [], [], []
    for history, future in zip(histories, targets, strict=True):
        encoded_items, encoded_signals = encode_history(history[-length:], catalog, length)
        items.append(encoded_items)
        signals.append(encoded_signals)
        future_idx = [catalog.index_of(s.item_id) for s in future]
        target_idx.append(future_idx[0])
        futures.append((future_idx + [0] * INTEREST_HORIZON)[:INTEREST_HORIZON])
        interest.append(_genre_distribution(catalog, genre_matrix, future_idx))
        seen.append(np.unique([catalog.index_of(s.item_id) for s in history]).astype(np.int32))
    return Examples(
        items=np.stack(items),
        signals=np.stack(signals),
        targets=np.asarray(target_idx, dtype=np.int32),
        interest_targets=np.stack(interest),
        seen=seen,
        futures=np.asarray(futures, dtype=np.int32),
    )


INTEREST_HORIZON = 3  # the interest head learns the genres of the next few items, not just the next one


def training_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """Every training position t >= 1 of every user: history = train[:t], target = train[t].

    Only the training part is used, so validation and test items never reach training features.
    """
    histories, futures = [], []
    for split in splits:
        for t in range(1, len(split.train)):
            histories.append(split.train[:t])  # the whole history: `seen` masks it in the loss
            futures.append(split.train[t : t + INTEREST_HORIZON])
    return _encode_many(catalog, histories, futures, length)


def validation_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """History = train part, target = the validation item."""
    return _encode_many(catalog, [s.train for s in splits], [[s.valid, s.test] for s in splits], length)


def test_examples(splits: list[UserSplit], catalog: Catalog, length: int = 50) -> Examples:
    """History = train + validation, target = the test item (seen = train + validation items)."""
    return _encode_many(catalog, [[*s.train, s.valid] for s in splits], [[s.test] for s in splits], length)
