"""rtrec.item_index: recall on a clustered set, deterministic build, exclusions, delta list, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from rtrec.item_index import ItemIndex


def clustered(count: int, dim: int = 16, topics: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim)).astype(np.float32)
    rows = (
        centres[rng.integers(0, topics, size=count)] + rng.normal(size=(count, dim)).astype(np.float32) * 0.4
    )
    return (rows * rng.lognormal(0, 0.2, size=(count, 1))).astype(np.float32)


def exact(vectors: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-(vectors @ query), kind="stable")[:k].tolist())


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = clustered(5000)
    queries = clustered(50, seed=1)
    return vectors, queries


@pytest.fixture(scope="module")
def index(data) -> ItemIndex:
    return ItemIndex.build(data[0], seed=0)


def test_recall_at_10_on_clustered_vectors(data, index):
    vectors, queries = data
    recall = np.mean(
        [len(set(index.search(q, 10)[0].tolist()) & exact(vectors, q, 10)) / 10 for q in queries]
    )
    assert recall >= 0.95
    assert index.lists == round(2 * np.sqrt(len(vectors)))


def test_probing_every_list_is_exact_up_to_int8(data, index):
    vectors, queries = data
    for q in queries[:10]:
        ids, scores = index.exact(q, 20)
        assert len(set(ids.tolist()) & exact(vectors, q, 20)) >= 19  # int8 rows: at most a near-tie swaps
        np.testing.assert_allclose(scores, vectors[ids] @ q, rtol=0.02, atol=0.05)
        assert np.all(np.diff(scores) <= 0)


def test_build_is_deterministic(data):
    a, b = ItemIndex.build(data[0], seed=3), ItemIndex.build(data[0], seed=3)
    for name in ("centroids", "offsets", "ids", "codes", "scales"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_every_row_is_in_exactly_one_list(data, index):
    assert sorted(index.ids.tolist()) == list(range(len(data[0])))
    assert index.offsets[0] == 0 and index.offsets[-1] == len(data[0])
    assert np.all(np.diff(index.offsets) >= 0)


def test_labels_are_kept(data):
    labels = np.arange(len(data[0])) * 10 + 7
    ix = ItemIndex.build(data[0], ids=labels, lists=20)
    ids, _ = ix.search(data[1][0], 5)
    assert set(ids.tolist()) <= set(labels.tolist())


def test_exclude_never_returns_excluded_and_still_fills_k(data, index):
    q = data[1][0]
    first, _ = index.search(q, 10)
    ids, _ = index.search(q, 10, exclude=first[:5])
    assert len(ids) == 10
    assert not set(ids.tolist()) & set(first[:5].tolist())
    assert set(first[5:].tolist()) <= set(ids.tolist())


def test_new_items_are_found_without_a_rebuild(data):
    vectors, queries = data
    ix = ItemIndex.build(vectors, lists=30, seed=0)
    q = queries[0]
    best = vectors @ q
    new = np.stack([q / np.linalg.norm(q) * np.abs(best).max() * 2, -q])  # one far above all, one far below
    ix.add(np.array([900_001, 900_002]), new)
    ids, scores = ix.search(q, 5)
    assert ids[0] == 900_001 and 900_002 not in ids.tolist()
    assert scores[0] == pytest.approx(float(new[0] @ q), rel=1e-5)  # the delta list is exact float32
    assert len(ix) == len(vectors) + 2 and ix.delta_size == 2


def test_a_delta_row_replaces_an_indexed_item(data):
    vectors, queries = data
    ix = ItemIndex.build(vectors, lists=30, seed=0)
    q = queries[0]
    top = int(ix.search(q, 1)[0][0])
    ix.add(np.array([top]), -vectors[top][None, :])  # the item's vector changed: now far down the list
    ids, _ = ix.search(q, 10)
    assert top not in ids.tolist()
    assert len(ids) == len(set(ids.tolist())) == 10
    ix.add(np.array([top]), vectors[top][None, :] * 3)  # replaced again: the delta keeps one row per id
    assert ix.delta_size == 1 and int(ix.search(q, 1)[0][0]) == top


def test_save_and_load_round_trip(tmp_path, data, index):
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = ItemIndex.load(path)
    for q in data[1][:5]:
        a, b = index.search(q, 10), loaded.search(q, 10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert loaded.n_probe == index.n_probe


def test_dequantized_rows_give_the_same_answers(data):
    ix = ItemIndex.build(data[0], lists=30, seed=0)
    q = data[1][2]
    ids, scores = ix.search(q, 10)
    ids2, scores2 = ix.dequantize().search(q, 10)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_allclose(scores, scores2, rtol=1e-5, atol=1e-5)


def test_small_and_bad_inputs():
    ix = ItemIndex.build(np.eye(3, dtype=np.float32))
    ids, _ = ix.search(np.array([0, 1, 0]), 10)
    assert ids.tolist()[0] == 1 and len(ids) == 3
    assert len(ix.search(np.array([0, 1, 0]), 2, exclude=np.array([0, 1, 2]))[0]) == 0
    with pytest.raises(ValueError):
        ix.search(np.array([0, 1, 0]), 0)
    with pytest.raises(ValueError):
        ItemIndex.build(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        ItemIndex.build(np.ones((4, 3)), ids=np.arange(3))
