"""MovieLens-100k from the recbole==1.2.1 wheel: fetch, verify, parse, split.

Splits are leave-one-out in time order per user (last = test, second last =
validation, rest = train), sorted stably so that the file order breaks ties
between interactions that share a timestamp.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtrec.features import GENRE_INDEX, Catalog, HistoryStep, encode_history

WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
DATASET_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
WORK_DIR = Path(__file__).resolve().parent / ".work"
TIME_CUTOFF_QUANTILE = 0.8


class ChecksumMismatch(RuntimeError):
    """The downloaded wheel is not the one whose checksum we pinned."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(work_dir: Path = WORK_DIR) -> Path:
    """Download the recbole wheel (no dependencies) once and verify its sha256."""
    work_dir.mkdir(parents=True, exist_ok=True)
    wheel = work_dir / WHEEL_NAME
    if not wheel.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                WHEEL_REQUIREMENT,
                "-d",
                str(work_dir),
            ],
            check=True,
        )
    actual = sha256_of(wheel)
    if actual != WHEEL_SHA256:
        raise ChecksumMismatch(f"{wheel} has sha256 {actual}, expected {WHEEL_SHA256}")
    return wheel


@dataclass
class Interactions:
    """All ratings in file order, plus the item table (titles are never read)."""

    user_ids: np.ndarray  # str
    item_ids: np.ndarray  # str
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64
    catalog_item_ids: list[str]
    catalog_genre_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.user_ids)


def _columns(header: str) -> dict[str, int]:
    return {name.split(":")[0]: i for i, name in enumerate(header.split("\t"))}


def parse_dataset(inter_text: str, item_text: str) -> Interactions:
    """Parse RecBole atomic files (.inter and .item, tab-separated with typed headers)."""
    inter_lines = inter_text.splitlines()
    cols = _columns(inter_lines[0])
    rows = [line.split("\t") for line in inter_lines[1:] if line.strip()]
    user_ids = np.array([r[cols["user_id"]] for r in rows], dtype=object)
    item_ids = np.array([r[cols["item_id"]] for r in rows], dtype=object)
    ratings = np.array([float(r[cols["rating"]]) for r in rows], dtype=np.float32)
    timestamps = np.array([int(float(r[cols["timestamp"]])) for r in rows], dtype=np.int64)

    item_lines = item_text.splitlines()
    icols = _columns(item_lines[0])
    catalog: list[tuple[str, list[int]]] = []
    for line in item_lines[1:]:
        if not line.strip():
            continue
        fields = line.split("\t")
        genre_field = fields[icols["class"]] if len(fields) > icols["class"] else ""
        genres = sorted({GENRE_INDEX[g] for g in genre_field.split() if g in GENRE_INDEX})
        catalog.append((fields[icols["item_id"]], genres or [GENRE_INDEX["unknown"]]))
    catalog.sort(key=lambda entry: int(entry[0]) if entry[0].isdigit() else entry[0])
    return Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=ratings,
        timestamps=timestamps,
        catalog_item_ids=[c[0] for c in catalog],
        catalog_genre_ids=[c[1] for c in catalog],
    )


def load_movielens(work_dir: Path = WORK_DIR) -> tuple[Interactions, str]:
    """Fetch (if needed), verify and parse ml-100k; returns the data and the wheel's sha256."""
    wheel = fetch_wheel(work_dir)
    with zipfile.ZipFile(wheel) as archive:
        inter = archive.read(f"{DATASET_PREFIX}.inter").decode("latin-1")
        item = archive.read(f"{DATASET_PREFIX}.item").decode("latin-1")
    return parse_dataset(inter, item), WHEEL_SHA256


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


def time_cutoff(data: Interactions, quantile: float = TIME_CUTOFF_QUANTILE) -> int:
    """Global timestamp cutoff for the streaming replay: events at or before it are 'history'."""
    return int(np.quantile(data.timestamps, quantile, method="lower"))


def build_catalog(data: Interactions, splits: Iterable[UserSplit]) -> Catalog:
    """Item table over every catalogue item; popularity counts training interactions only."""
    catalog = Catalog(
        item_ids=list(data.catalog_item_ids),
        genre_ids=[list(g) for g in data.catalog_genre_ids],
        popularity=np.zeros(len(data.catalog_item_ids), dtype=np.float32),
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
    genre_matrix = catalog.genre_matrix()
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
