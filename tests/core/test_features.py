"""rtrec.features: signal mapping, history encoding and the catalog round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dataio.movielens import GENRES
from rtrec.features import (
    EVENT_TYPES,
    NUM_SIGNALS,
    PAD_INDEX,
    SEQUENCE_LENGTH,
    Catalog,
    HistoryStep,
    encode_history,
    signal_index,
)


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        item_ids=["a", "b", "c"], categories=GENRES, category_ids=[[1, 5], [8], []], popularity=[3, 2, 1]
    )


def test_every_event_type_maps_to_a_trained_signal():
    for event_type in EVENT_TYPES:
        assert 1 <= signal_index(event_type) < NUM_SIGNALS
    assert signal_index("rating", 1) == 1
    assert signal_index("rating", 4.6) == 5
    assert signal_index("rating", 11) == 5
    assert signal_index("rating", -3) == 1
    assert signal_index("something-new") == 3


def test_encode_history_left_pads_newest_last(catalog):
    items, signals = encode_history([HistoryStep("a", "rating", 2), HistoryStep("c", "click")], catalog)
    assert items.dtype == np.int32 and items.shape == (SEQUENCE_LENGTH,)
    assert items[-2:].tolist() == [1, 3] and signals[-2:].tolist() == [2, 4]
    assert not items[:-2].any() and not signals[:-2].any()


def test_unknown_items_are_dropped_and_only_the_newest_kept(catalog):
    steps = [HistoryStep("zzz", "view")] + [
        HistoryStep("abc"[i % 3], "purchase") for i in range(SEQUENCE_LENGTH + 5)
    ]
    items, signals = encode_history(steps, catalog)
    assert PAD_INDEX not in items
    assert items[-1] == catalog.index_of("abc"[(SEQUENCE_LENGTH + 4) % 3])
    assert set(signals.tolist()) == {5}


def test_empty_history_is_all_padding(catalog):
    items, signals = encode_history([], catalog)
    assert not items.any() and not signals.any()


def test_catalog_round_trip_and_genre_matrix(catalog, tmp_path):
    (tmp_path / "items.json").write_text(json.dumps(catalog.to_json()))
    loaded = Catalog.load(tmp_path)
    assert loaded.item_ids == catalog.item_ids and loaded.category_ids == catalog.category_ids
    assert loaded.categories == catalog.categories
    assert loaded.index_of("b") == 2 and loaded.index_of("nope") == PAD_INDEX and loaded.item_at(3) == "c"
    assert loaded.categories_of("a") == [GENRES[1], GENRES[5]]
    matrix = loaded.category_matrix()
    assert matrix.shape == (4, len(GENRES)) and not matrix[0].any() and matrix[2, 8] == 1.0


def test_any_vocabulary_round_trips_and_old_artifacts_still_load(tmp_path):
    shop = Catalog(["sku-1", "sku-2"], [[0, 2], [1]], np.ones(2), ("Tents", "Stoves", "Sale"))
    assert Catalog.from_json(json.loads(json.dumps(shop.to_json()))).categories_of("sku-1") == [
        "Tents",
        "Sale",
    ]
    old = {"genres": ["x", "y"], "item_ids": ["a"], "genre_ids": [[1]], "popularity": [1.0]}
    assert Catalog.from_json(old).categories_of("a") == ["y"]
    with pytest.raises(ValueError):
        Catalog(["a"], [[5]], np.ones(1), ("only-one",))
