"""The Dataset pipeline: MovieLens gives the very examples of the MovieLens-only pipeline it replaced, and
a dataset with repeats (views, clicks, purchases of the same item) predicts new items only.

The old pipeline is kept below, frozen, as the reference (``model_build/data.py`` before it read
``dataio.dataset.Dataset``).
"""

from __future__ import annotations

import numpy as np
import pytest

from dataio import movielens
from dataio.dataset import Dataset
from dataio.movielens import GENRES, Interactions
from model_build import data as data_module
from rtrec.features import Catalog, HistoryStep, encode_history, signal_index

# ---------- the MovieLens-only pipeline, frozen (reference) ----------

_HORIZON = 3


def _old_leave_one_out(data: Interactions) -> list[tuple[str, list[HistoryStep], HistoryStep, HistoryStep]]:
    order = np.argsort(data.timestamps, kind="stable")
    sequences: dict[str, list[int]] = {}
    for row in order:
        sequences.setdefault(str(data.user_ids[row]), []).append(int(row))
    splits = []
    for user_id, rows in sequences.items():
        if len(rows) < 3:
            continue
        steps = [HistoryStep(str(data.item_ids[r]), "rating", float(data.ratings[r])) for r in rows]
        splits.append((user_id, steps[:-2], steps[-2], steps[-1]))
    return splits


def _old_build_catalog(data: Interactions, splits) -> Catalog:
    catalog = Catalog(
        item_ids=list(data.catalog_item_ids),
        category_ids=[list(g) for g in data.catalog_genre_ids],
        popularity=np.zeros(len(data.catalog_item_ids), dtype=np.float32),
        categories=GENRES,
    )
    counts = np.zeros(len(catalog), dtype=np.float32)
    for _, train, _, _ in splits:
        for step in train:
            index = catalog.index_of(step.item_id)
            if index:
                counts[index - 1] += 1
    catalog.popularity = counts
    return catalog


def _old_encode_many(catalog, histories, targets, length):
    genre_matrix = catalog.category_matrix()
    items, signals, target_idx, interest, seen, futures = [], [], [], [], [], []
    for history, future in zip(histories, targets, strict=True):
        encoded_items, encoded_signals = encode_history(history[-length:], catalog, length)
        items.append(encoded_items)
        signals.append(encoded_signals)
        future_idx = [catalog.index_of(s.item_id) for s in future]
        target_idx.append(future_idx[0])
        futures.append((future_idx + [0] * _HORIZON)[:_HORIZON])
        rows = genre_matrix[future_idx]
        rows = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1.0)
        total = rows.sum(axis=0)
        interest.append((total / max(total.sum(), 1e-9)).astype(np.float32))
        seen.append(np.unique([catalog.index_of(s.item_id) for s in history]).astype(np.int32))
    return {
        "items": np.stack(items),
        "signals": np.stack(signals),
        "targets": np.asarray(target_idx, dtype=np.int32),
        "interest_targets": np.stack(interest),
        "seen": seen,
        "futures": np.asarray(futures, dtype=np.int32),
    }


def _old_examples(data: Interactions, length: int = 50):
    splits = _old_leave_one_out(data)
    catalog = _old_build_catalog(data, splits)
    histories, futures = [], []
    for _, train, _, _ in splits:
        for t in range(1, len(train)):
            histories.append(train[:t])
            futures.append(train[t : t + _HORIZON])
    return catalog, {
        "train": _old_encode_many(catalog, histories, futures, length),
        "valid": _old_encode_many(catalog, [s[1] for s in splits], [[s[2], s[3]] for s in splits], length),
        "test": _old_encode_many(catalog, [[*s[1], s[2]] for s in splits], [[s[3]] for s in splits], length),
    }


# ---------- the comparison ----------


def _new_examples(dataset: Dataset, length: int = 50):
    splits = data_module.leave_one_out(dataset)
    catalog = data_module.build_catalog(dataset, splits)
    return catalog, {
        "train": data_module.training_examples(splits, catalog, length),
        "valid": data_module.validation_examples(splits, catalog, length),
        "test": data_module.test_examples(splits, catalog, length),
    }


def _assert_same(old_catalog, old, new_catalog, new):
    assert new_catalog.to_json() == old_catalog.to_json()
    for part in ("train", "valid", "test"):
        for name in ("items", "signals", "targets", "interest_targets", "futures"):
            expected, actual = old[part][name], getattr(new[part], name)
            assert actual.dtype == expected.dtype, (part, name)
            np.testing.assert_array_equal(actual, expected, err_msg=f"{part}.{name}")
        assert len(new[part].seen) == len(old[part]["seen"])
        for actual, expected in zip(new[part].seen, old[part]["seen"], strict=True):
            assert actual.dtype == expected.dtype
            np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("length", [50, 2])
def test_movielens_through_the_adapter_gives_the_old_examples(tiny, tiny_dataset, length):
    old_catalog, old = _old_examples(tiny, length)
    new_catalog, new = _new_examples(tiny_dataset, length)
    assert len(new["train"].targets) == 3  # user 2: one training example, user 1: two
    _assert_same(old_catalog, old, new_catalog, new)


def _random_movielens(seed: int, users: int = 40, items: int = 60) -> Interactions:
    """A MovieLens-shaped random dataset with many timestamp ties (one rating per user and item)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, users + 1):
        count = int(rng.integers(1, 25))
        for item in rng.choice(np.arange(1, items + 1), size=count, replace=False):
            rows.append((str(user), str(item), float(rng.integers(1, 6)), int(rng.integers(0, 30))))
    order = rng.permutation(len(rows))  # file order is not time order
    rows = [rows[i] for i in order]
    names = [g for g in GENRES if g != "unknown"]
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for item in range(1, items + 1):
        genres = " ".join(rng.choice(names, size=int(rng.integers(0, 4)), replace=False).tolist())
        item_lines.append(f"{item}\tT\t1995\t{genres}")
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter_lines += [f"{u}\t{i}\t{r:g}\t{t}" for u, i, r, t in rows]
    return movielens.parse_dataset("\n".join(inter_lines), "\n".join(item_lines))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_movielens_shaped_random_data_gives_the_old_examples(seed):
    data = _random_movielens(seed)
    old_catalog, old = _old_examples(data, length=8)
    new_catalog, new = _new_examples(movielens.as_dataset(data, fingerprint="x"), length=8)
    _assert_same(old_catalog, old, new_catalog, new)


def test_the_older_interactions_type_is_still_accepted(tiny, tiny_dataset):
    """evaluation/replay.py still hands model_build a dataio.movielens.Interactions."""
    old = data_module.leave_one_out(tiny)
    new = data_module.leave_one_out(tiny_dataset)
    assert [(s.user_id, s.train, s.valid, s.test) for s in old] == [
        (s.user_id, s.train, s.valid, s.test) for s in new
    ]
    old_catalog = data_module.build_catalog(tiny, old)
    assert old_catalog.to_json() == data_module.build_catalog(tiny_dataset, new).to_json()


# ---------- a dataset with repeats ----------


def test_repeats_are_history_and_only_new_items_are_predicted(shop):
    dataset = shop
    splits = data_module.leave_one_out(dataset)
    assert [s.user_id for s in splits] == ["u1"]
    split = splits[0]
    assert [(s.item_id, s.event_type) for s in split.train] == [
        ("A", "view"),
        ("A", "click"),
        ("B", "view"),
        ("C", "view"),
        ("C", "add_to_cart"),
        ("A", "view"),
    ]
    assert (split.valid.item_id, split.valid.event_type) == ("D", "view")
    assert [(s.item_id, s.event_type) for s in split.between] == [("D", "purchase")]
    assert split.between[0].value == 40.0 and split.train[0].value is None
    assert split.test.item_id == "E"

    catalog = data_module.build_catalog(dataset, splits)
    assert catalog.categories == ("Home > Kitchen", "Toys", "Garden")
    assert catalog.category_ids == [[0], [0, 1], [], [2], [1]]
    assert catalog.popularity.tolist() == [3.0, 1.0, 2.0, 0.0, 0.0]  # every training interaction

    index = catalog.index_of
    train = data_module.training_examples(splits, catalog)
    # new items at train positions 2 (B) and 3 (C); the repeats never become targets
    assert train.targets.tolist() == [index("B"), index("C")]
    assert train.futures.tolist() == [[index("B"), index("C"), 0], [index("C"), 0, 0]]
    assert train.items[0][-2:].tolist() == [index("A"), index("A")]
    assert train.signals[0][-2:].tolist() == [signal_index("view"), signal_index("click")]
    assert train.seen[1].tolist() == [index("A"), index("B")]
    for row, target in enumerate(train.targets.tolist()):
        assert target not in train.seen[row]

    valid = data_module.validation_examples(splits, catalog)
    assert valid.targets.tolist() == [index("D")]
    assert valid.signals[0][-2:].tolist() == [signal_index("add_to_cart", 2.0), signal_index("view")]

    test = data_module.test_examples(splits, catalog)
    assert test.targets.tolist() == [index("E")]
    assert test.items[0][-3:].tolist() == [index("A"), index("D"), index("D")]
    assert test.signals[0][-1] == signal_index("purchase", 40.0)
    assert test.seen[0].tolist() == [index("A"), index("B"), index("C"), index("D")]
    np.testing.assert_allclose(test.interest_targets[0], [0.0, 1.0, 0.0])
