"""MovieLensAdapter on a tiny hand-written RecBole-format text (no MovieLens data is committed)."""

from __future__ import annotations

import numpy as np

import dataio
from dataio import movielens

INTER = "\n".join(
    [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "1\t12\t5\t881250949",
        "1\t10\t3\t881250950",
        "2\t11\t4\t881250000",
    ]
)
ITEMS = "\n".join(
    [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "10\tA Title\t1995\tAnimation Children's Comedy",
        "11\tAnother Title\t1995\t",
        "12\tThird Title\t1995\tSci-Fi",
    ]
)


def test_as_dataset_converts_ratings_and_genres():
    data = movielens.as_dataset(movielens.parse_dataset(INTER, ITEMS), "abc")
    inter = data.interactions
    assert data.name == "movielens-100k" and data.fingerprint == "abc"
    assert inter.types.tolist() == ["rating"] * 3
    assert inter.values.tolist() == [5.0, 3.0, 4.0]
    assert inter.timestamps_ms.tolist() == [881250949000, 881250950000, 881250000000]
    assert inter.user_ids.tolist() == ["1", "1", "2"]
    by_id = {item.item_id: item for item in data.items}
    assert by_id["10"].categories == ("Animation", "Children's", "Comedy")
    assert by_id["11"].categories == ("unknown",)
    assert all(item.title is None for item in data.items)  # titles are never read
    assert all(item.created_at == 0 and item.available for item in data.items)
    assert data.categories == list(movielens.GENRES)  # the dataset's own order, as the model's ids
    assert np.isfinite(inter.values).all()


def test_adapter_loads_through_load_movielens(monkeypatch, tmp_path):
    seen = {}

    def fake_load(work_dir):
        seen["work_dir"] = work_dir
        return movielens.parse_dataset(INTER, ITEMS), movielens.WHEEL_SHA256

    monkeypatch.setattr(movielens, "load_movielens", fake_load)
    data = movielens.MovieLensAdapter(tmp_path).load()
    assert seen["work_dir"] == tmp_path
    assert data.fingerprint == movielens.WHEEL_SHA256
    assert len(data.interactions) == 3 and len(data.items) == 3


def test_registry_names_movielens():
    assert isinstance(dataio.adapter_for("movielens"), movielens.MovieLensAdapter)
