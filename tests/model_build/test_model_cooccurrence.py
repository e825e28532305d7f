"""The build side of the co-occurrence blend: counting, trimming, choosing on validation, versioning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from model_build import cooccurrence
from model_build.data import Examples
from rtrec.cooccurrence import COOCCURRENCE_FILE, ItemNeighbours

MODEL_DIR = Path(__file__).resolve().parents[2] / "layers" / "model" / "model"


def followers(table: ItemNeighbours, item: int) -> dict[int, float]:
    items, weights = table.row(item)
    return {int(i): round(float(w), 6) for i, w in zip(items, weights, strict=True)}


def test_counts_become_next_item_probabilities_within_the_window():
    # 1 -> 2 twice, 1 -> 3 once at distance 1; 1 -> 3 and 1 -> 4 at distance 2
    sequences = [[1, 2, 3], [1, 2, 4], [1, 3]]
    nearest = cooccurrence.count_neighbours(sequences, 4, window=1, decay=1.0)
    assert followers(nearest, 1) == {2: round(2 / 3, 6), 3: round(1 / 3, 6)}
    assert followers(nearest, 2) == {3: 0.5, 4: 0.5}
    assert followers(nearest, 4) == {}
    wider = cooccurrence.count_neighbours(sequences, 4, window=2, decay=0.5)
    # row 1: 2 (2 × 1), 3 (1 × 1 + 1 × 0.5), 4 (1 × 0.5) over 4.0
    assert followers(wider, 1) == {2: 0.5, 3: 0.375, 4: 0.125}
    assert list(followers(wider, 1)) == [2, 3, 4]  # strongest first


def test_repeats_are_not_their_own_followers_and_rows_are_trimmed():
    table = cooccurrence.count_neighbours(
        [[1, 1, 2], [1, 3], [1, 4], [1, 5]], 5, window=1, decay=1.0, top_n=2
    )
    row = followers(table, 1)
    assert 1 not in row and len(row) == 2
    assert set(row) == {2, 3}  # equal counts: the lower index first, so rebuilds agree


def test_sequences_are_the_training_part_only(tiny_dataset):
    from model_build.data import build_catalog, leave_one_out

    splits = leave_one_out(tiny_dataset)
    catalog = build_catalog(tiny_dataset, splits)
    got = dict(zip((s.user_id for s in splits), cooccurrence.sequences(splits, catalog), strict=True))
    # user 1 rated 12, 13, 14, 10, 11: 10 is validation and 11 test, so the training part is 12, 13, 14
    assert got["1"] == [catalog.index_of(i) for i in ("12", "13", "14")]
    assert got["2"] == [catalog.index_of(i) for i in ("10", "14")]  # 10, 14, 12, 13 in time order


def _examples(histories: list[list[int]], targets: list[int]) -> Examples:
    items = np.zeros((len(histories), 50), dtype=np.int32)
    for row, history in enumerate(histories):
        items[row, 50 - len(history) :] = history
    return Examples(
        items=items,
        signals=(items > 0).astype(np.int32),
        targets=np.asarray(targets, dtype=np.int32),
        interest_targets=np.zeros((len(targets), 1), dtype=np.float32),
        seen=[np.asarray(h, dtype=np.int32) for h in histories],
        futures=np.asarray(targets, dtype=np.int32)[:, None],
    )


def test_choose_blends_when_transitions_predict_the_next_item():
    # 30 items; in training item i is always followed by i + 1. The "model" ranks the target 20th.
    num_items = 30
    sequences = [list(range(start, num_items + 1)) for start in range(1, 10)]
    histories = [[t - 2, t - 1] for t in range(5, 25)]
    targets = [t for t in range(5, 25)]
    scores = np.tile(np.linspace(1.0, 0.0, num_items + 1, dtype=np.float32), (len(targets), 1))
    for row, target in enumerate(targets):
        scores[row, target] = scores[row].min()
    grid = {"window": (1,), "decay": (1.0,), "recent": (1,), "weight": (0.0, 10.0)}
    choice, measured = cooccurrence.choose(scores, _examples(histories, targets), sequences, num_items, grid)
    assert choice.weight == 10.0 and choice.hr == 1.0
    assert next(m for m in measured if m["weight"] == 0.0)["HR@10"] == 0.0


def test_choose_keeps_the_model_alone_when_transitions_do_not_help():
    num_items = 30
    sequences = [list(range(start, num_items + 1)) for start in range(1, 10)]
    histories = [[t - 2, t - 1] for t in range(5, 25)]
    targets = [t for t in range(5, 25)]
    scores = np.zeros((len(targets), num_items + 1), dtype=np.float32)
    for row, target in enumerate(targets):
        scores[row, target] = 5.0  # the model is always right; the follower (target + 1 ≠ target) is not
    histories = [[t - 1, t] for t in targets]  # the latest item's follower is the target + 1
    for row, target in enumerate(targets):
        histories[row] = [target + 3, target + 4]
    grid = {"window": (1,), "decay": (1.0,), "recent": (1,), "weight": (0.0, 10.0)}
    choice, _ = cooccurrence.choose(scores, _examples(histories, targets), sequences, num_items, grid)
    assert choice.weight == 0.0 and choice.hr == 1.0


def test_the_blend_is_part_of_the_artifact_version(tmp_path):
    from model_build.export import rewrite_with_neighbours

    model = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model)
    (model / COOCCURRENCE_FILE).unlink(missing_ok=True)
    original = json.loads((model / "metadata.json").read_text())
    plain = rewrite_with_neighbours(model, None, {"chosen_on": "test"})
    assert not (model / COOCCURRENCE_FILE).exists()
    table = cooccurrence.count_neighbours([[1, 2, 3]], 1682, window=1, decay=1.0)
    entry = {"serving": {"weight": 2.0, "recent": 1, "recent_decay": 1.0}}
    blended = rewrite_with_neighbours(model, table, entry)
    reweighted = rewrite_with_neighbours(model, table, {"serving": {**entry["serving"], "weight": 3.0}})
    assert len({plain, blended, reweighted}) == 3
    assert (model / COOCCURRENCE_FILE).exists()
    assert rewrite_with_neighbours(model, table, entry) == blended  # content only: a rewrite reproduces it
    if "cooccurrence" not in original:
        assert plain == original["version"]  # an artifact without a blend keeps its version


@pytest.mark.parametrize("recent", [1, 3])
def test_votes_matrix_matches_the_serving_votes(recent):
    table = cooccurrence.count_neighbours([[1, 2, 3, 4], [2, 4, 1], [3, 1, 2]], 4, window=2, decay=0.5)
    histories = np.array([[0, 1, 2, 3], [0, 0, 4, 2]], dtype=np.int32)
    matrix = cooccurrence.votes_matrix(table, histories, recent, 0.5)
    for row, history in enumerate(histories):
        candidates, vote = table.votes(history, recent, 0.5)
        expected = np.zeros(5, dtype=np.float32)
        expected[candidates] = vote
        np.testing.assert_allclose(matrix[row], expected)


@pytest.mark.parametrize("weight", [0.0, 0.3, 3.0, 1e4])
def test_the_sparse_ranker_agrees_with_whole_rows_in_the_top_k(weight):
    rng = np.random.default_rng(7)
    num_items, users = 300, 64
    sequences = [rng.integers(1, num_items + 1, size=30).tolist() for _ in range(200)]
    table = cooccurrence.count_neighbours(sequences, num_items, window=2, decay=0.5)
    histories = [rng.integers(1, num_items + 1, size=8).tolist() for _ in range(users)]
    examples = _examples(histories, [int(rng.integers(1, num_items + 1)) for _ in range(users)])
    examples.seen = [np.setdiff1d(s, [t]) for s, t in zip(examples.seen, examples.targets, strict=True)]
    # rounded scores make ties, which count against the target on both paths
    scores = np.round(rng.normal(size=(users, num_items + 1)), 1).astype(np.float32)
    masked = cooccurrence.mask_seen(scores, examples)
    candidates, votes = cooccurrence.sparse_votes(table, examples.items, 2, 0.5)
    dense = cooccurrence.votes_matrix(table, examples.items, 2, 0.5)
    sparse = cooccurrence._Ranker(masked, examples.targets, depth=cooccurrence.K + 2 * cooccurrence.TOP_N + 1)
    got = sparse.ranks(candidates, votes, weight)
    expected = cooccurrence.ranks(masked + np.float32(weight) * dense, examples.targets)
    np.testing.assert_array_equal(np.minimum(got, cooccurrence.K), np.minimum(expected, cooccurrence.K))
    assert (expected < cooccurrence.K).any()
