"""The adapter interface: columns, time order, user sequences, categories, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from dataio.dataset import DataAdapter, Dataset, InteractionColumns, fingerprint_of
from rtrec.catalog import CatalogItem


def columns(users, items, stamps, types=None, values=None) -> InteractionColumns:
    n = len(users)
    return InteractionColumns(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(items, dtype=object),
        types=np.array(types or ["view"] * n, dtype=object),
        values=np.array(values if values is not None else [np.nan] * n),
        timestamps_ms=np.array(stamps),
    )


def test_columns_are_coerced_to_their_dtypes():
    inter = columns(["a"], ["x"], [1_700_000_000_000], values=[4])
    assert inter.values.dtype == np.float32 and inter.timestamps_ms.dtype == np.int64
    assert inter.user_ids.dtype == object and len(inter) == 1


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        columns(["a", "b"], ["x"], [1, 2])


def test_unknown_event_types_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        columns(["a"], ["x"], [1], types=["like"])


def test_empty_columns():
    assert len(InteractionColumns.empty()) == 0
    assert InteractionColumns.empty().user_sequences() == {}


def test_time_order_is_stable_for_ties():
    inter = columns(["a", "b", "a", "b"], ["1", "2", "3", "4"], [30, 10, 10, 20])
    assert inter.time_order().tolist() == [1, 2, 3, 0]
    assert inter.sorted_by_time().item_ids.tolist() == ["2", "3", "4", "1"]


def test_user_sequences_in_time_order_users_by_first_event():
    inter = columns(["a", "b", "a", "b", "a"], ["1", "2", "3", "4", "5"], [50, 10, 20, 20, 20])
    sequences = inter.user_sequences()
    assert list(sequences) == ["b", "a"]
    assert sequences["b"].tolist() == [1, 3]
    assert sequences["a"].tolist() == [2, 4, 0]  # the tie at 20 keeps file order (row 2 before row 4)


def test_dataset_categories_in_first_seen_order_and_summary():
    items = [
        CatalogItem("x", ("Home > Kitchen", "Sale")),
        CatalogItem("y", ("Books", "Home > Kitchen")),
    ]
    inter = columns(["a", "a", "b"], ["x", "gone", "y"], [3, 2, 1], types=["view", "click", "purchase"])
    data = Dataset("t", inter, items, "f" * 64)
    assert data.categories == ["Home > Kitchen", "Sale", "Books"]
    assert data.item_index() == {"x": 0, "y": 1}
    assert data.unknown_item_rows().tolist() == [False, True, False]
    summary = data.summary()
    assert summary["users"] == 2 and summary["items"] == 2 and summary["unknown_item_interactions"] == 1
    assert summary["types"] == {"click": 1, "purchase": 1, "view": 1}
    assert data.sorted_by_time().interactions.timestamps_ms.tolist() == [1, 2, 3]


def test_fingerprint_depends_on_bytes_and_roles_not_names(tmp_path):
    (tmp_path / "a.jsonl").write_text("1")
    (tmp_path / "b.csv").write_text("1")
    (tmp_path / "c.csv").write_text("2")
    same = fingerprint_of({"items": tmp_path / "a.jsonl"}) == fingerprint_of({"items": tmp_path / "b.csv"})
    assert same
    assert fingerprint_of({"items": tmp_path / "b.csv"}) != fingerprint_of({"items": tmp_path / "c.csv"})
    assert fingerprint_of({"items": tmp_path / "b.csv"}) != fingerprint_of({"events": tmp_path / "b.csv"})
    assert len(fingerprint_of([("items", tmp_path / "b.csv")])) == 64


def test_adapters_satisfy_the_protocol(tmp_path):
    from dataio.movielens import MovieLensAdapter

    assert isinstance(MovieLensAdapter(tmp_path), DataAdapter)


def test_a_source_vocabulary_comes_first():
    items = [CatalogItem("x", ("b", "new"))]
    data = Dataset("t", InteractionColumns.empty(), items, "f", vocabulary=("a", "b"))
    assert data.categories == ["a", "b", "new"]
    assert data.sorted_by_time().vocabulary == ("a", "b")
