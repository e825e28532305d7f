"""The Scorer on the committed model artifact: padding, chunking, exclusion, interests, state reset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataio.movielens import GENRES
from rtrec.features import PAD_INDEX, HistoryStep, encode_history
from rtrec.scorer import ModelUnavailable, Scorer

MODEL_DIR = Path(os.environ["MODEL_DIR"])
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.load(MODEL_DIR)


@pytest.fixture
def history(scorer):
    steps = [
        HistoryStep(scorer.catalog.item_at(i), "rating", 5.0 - i % 3) for i in (1, 50, 100, 172, 181, 258)
    ]
    return encode_history(steps, scorer.catalog)


def test_metadata_and_catalog(scorer):
    assert scorer.version == scorer.metadata["version"]
    assert len(scorer.catalog) > 1000
    assert set(scorer.metadata["inputs"]) == {"items", "signals", "candidates"}
    assert set(scorer.metadata["outputs"]) == {"scores", "interests", "user_vector"}


def test_interests_are_a_distribution_over_genres(scorer, history):
    interests = scorer.interests(*history)
    assert interests.dtype == np.float32 and interests.shape == (len(GENRES),)
    assert interests.min() >= 0
    assert interests.sum() == pytest.approx(1.0, abs=1e-5)


def test_empty_history_still_scores(scorer):
    items, signals = encode_history([], scorer.catalog)
    assert scorer.interests(items, signals).sum() == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(scorer.score(items, signals, np.array([1, 2, 3]))).all()


@pytest.mark.parametrize("count", [1, 5, 127, 128, 129, 700])
def test_score_pads_and_unpads(scorer, history, count):
    everything = scorer.score(*history, np.arange(1, len(scorer.catalog) + 1))
    rng = np.random.default_rng(count)
    candidates = rng.choice(np.arange(1, len(scorer.catalog) + 1), size=count, replace=False)
    scores = scorer.score(*history, candidates)
    assert scores.shape == (count,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, everything[candidates - 1], rtol=1e-3, atol=1e-3)


def test_more_candidates_than_the_catalog_are_chunked(scorer, history):
    candidates = np.concatenate([np.arange(1, len(scorer.catalog) + 1)] * 2)
    scores = scorer.score(*history, candidates)
    np.testing.assert_allclose(scores[: len(scorer.catalog)], scores[len(scorer.catalog) :], rtol=1e-5)


def test_repeated_calls_give_identical_scores(scorer, history):
    """The fused LSTM keeps state between invokes unless reset; a second call must not drift."""
    first = scorer.score(*history, np.arange(1, 200))
    other_items, other_signals = encode_history(
        [HistoryStep(scorer.catalog.item_at(7), "view")], scorer.catalog
    )
    scorer.score(other_items, other_signals, np.arange(1, 200))
    np.testing.assert_array_equal(scorer.score(*history, np.arange(1, 200)), first)


def test_history_changes_the_answer(scorer, history):
    other = encode_history(
        [HistoryStep(scorer.catalog.item_at(i), "rating", 5) for i in (2, 3, 4)], scorer.catalog
    )
    assert not np.allclose(scorer.score(*history, np.arange(1, 50)), scorer.score(*other, np.arange(1, 50)))


def test_retrieve_never_returns_padding_or_excluded(scorer, history):
    exclude = np.concatenate([history[0][history[0] > 0], np.arange(1, 300)])
    indices, scores = scorer.retrieve(*history, 50, exclude=exclude)
    assert len(indices) == 50 == len(scores)
    assert PAD_INDEX not in indices
    assert not set(indices.tolist()) & set(exclude.tolist())
    assert len(set(indices.tolist())) == 50
    assert np.all(np.diff(scores) <= 0)  # best first
    np.testing.assert_allclose(scores, _served_scores(scorer, history, indices), rtol=1e-3, atol=1e-3)


def _served_scores(scorer, history, indices):
    """The model's scores of `indices` plus the artifact's co-occurrence blend, if it ships one."""
    scores = scorer.score(*history, indices)
    if scorer.blend is not None:
        followers, vote = scorer._neighbours.votes(history[0], scorer.blend.recent, scorer.blend.recent_decay)
        votes = dict(zip(followers.tolist(), vote.tolist(), strict=True))
        scores = scores + scorer.blend.weight * np.array([votes.get(int(i), 0.0) for i in indices])
    return scores


def test_the_shipped_artifact_blends_as_its_metadata_says(scorer):
    serving = scorer.metadata["cooccurrence"].get("serving")
    assert (scorer.blend is None) == (serving is None)
    if serving is not None:
        assert (scorer.blend.weight, scorer.blend.recent, scorer.blend.recent_decay) == (
            serving["weight"],
            serving["recent"],
            serving["recent_decay"],
        )
        assert len(scorer._neighbours) == len(scorer.catalog)


def test_retrieve_returns_fewer_when_almost_everything_is_excluded(scorer, history):
    keep = np.array([10, 20, 30])
    exclude = np.setdiff1d(np.arange(0, len(scorer.catalog) + 1), keep)
    indices, _ = scorer.retrieve(*history, 100, exclude=exclude)
    assert sorted(indices.tolist()) == keep.tolist()


def test_retrieve_larger_than_the_shortlist(scorer, history):
    indices, _ = scorer.retrieve(*history, scorer.shortlist_size + 50)
    assert len(indices) == scorer.shortlist_size + 50 and PAD_INDEX not in indices


@pytest.mark.parametrize(
    "candidates",
    [np.array([], dtype=np.int64), np.array([0, 1]), np.array([1, 100000]), np.array([1.5, 2.0])],
)
def test_bad_candidates_are_rejected(scorer, history, candidates):
    with pytest.raises(ValueError):
        scorer.score(*history, candidates)


def test_bad_history_is_rejected(scorer):
    with pytest.raises(ValueError):
        scorer.interests(np.zeros(3, np.int32), np.zeros(3, np.int32))


def test_missing_artifact_raises_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable):
        Scorer.load(tmp_path)


def test_unknown_interpreter_module_raises_model_unavailable():
    with pytest.raises(ModelUnavailable):
        Scorer.load(MODEL_DIR, interpreter_module="no_such_tflite_module")


def test_same_answers_on_tflite_runtime(scorer, history):
    """The artifact and the scorer also run unchanged on tflite_runtime 2.14 (own process, numpy < 2)."""
    code = (
        "import json, sys, numpy as np\n"
        "from rtrec.scorer import Scorer\n"
        "s = Scorer.load(sys.argv[1], interpreter_module='tflite_runtime.interpreter')\n"
        "items, signals = (np.array(x, np.int32) for x in json.loads(sys.argv[2]))\n"
        "idx, _ = s.retrieve(items, signals, 20)\n"
        "scores = s.score(items, signals, np.arange(1, 300)).tolist()\n"
        "print(json.dumps({'scores': scores, 'top': idx.tolist()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "layers" / "core")}
    payload = json.dumps([history[0].tolist(), history[1].tolist()])
    result = subprocess.run(
        [sys.executable, "-c", code, str(MODEL_DIR), payload],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["scores"], scorer.score(*history, np.arange(1, 300)), rtol=1e-3, atol=1e-3)
    assert len(set(out["top"]) & set(scorer.retrieve(*history, 20)[0].tolist())) >= 18


def test_retrieve_takes_the_one_call_path_with_the_numpy_head(scorer):
    # The head in numpy must match the model at load; if it silently fell back to the second model
    # call, every other test would still pass and only the latency would show it.
    assert scorer._head is not None


def test_an_artifact_with_an_item_index_retrieves_through_it(tmp_path, scorer, history):
    import shutil

    from rtrec.item_index import ITEM_INDEX_FILE, ItemIndex

    shutil.copytree(MODEL_DIR, tmp_path / "model")
    vectors = scorer.item_vectors[1:]
    # Every list probed: the index path must give the exact path's candidates (recall is bench/scale.py's).
    index = ItemIndex.build(vectors, ids=np.arange(1, len(scorer.catalog) + 1), lists=16, n_probe=16)
    index.save(tmp_path / "model" / ITEM_INDEX_FILE)
    indexed = Scorer.load(tmp_path / "model")
    assert indexed._index is not None
    items, signals = history
    exact, _ = scorer.retrieve(items, signals, 100)
    approximate, scores = indexed.retrieve(items, signals, 100, exclude=np.array([int(exact[0])]))
    assert int(exact[0]) not in approximate.tolist()
    overlap = len(set(exact.tolist()[1:]) & set(approximate.tolist())) / 99
    assert overlap >= 0.95 and np.all(np.diff(scores) <= 0)


def _with_blend(tmp_path, scorer, rows: dict[int, list[tuple[int, float]]], serving: dict | None) -> Path:
    """A copy of the artifact whose co-occurrence table holds `rows` (item -> followers)."""
    import shutil

    from rtrec.cooccurrence import COOCCURRENCE_FILE, ItemNeighbours

    model = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model)
    size = len(scorer.catalog)
    lengths = np.zeros(size + 2, dtype=np.int64)
    for item, followers in rows.items():
        lengths[item + 1] = len(followers)
    entries = [rows[item] for item in sorted(rows)]
    ItemNeighbours(
        np.cumsum(lengths),
        np.array([f for row in entries for f, _ in row], dtype=np.int32),
        np.array([w for row in entries for _, w in row], dtype=np.float32),
    ).save(model / COOCCURRENCE_FILE)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["cooccurrence"] = {"serving": serving} if serving else {}
    (model / "metadata.json").write_text(json.dumps(metadata))
    return model


def test_retrieve_blends_in_the_followers_of_the_latest_items(tmp_path, scorer, history):
    items, signals = history
    model_alone = Scorer.load(MODEL_DIR)
    model_alone.blend = None
    model_only, _ = model_alone.retrieve(items, signals, 128, exclude=items)
    latest = int(items[-1])
    # an item far down the model's order, outside its shortlist
    order = np.argsort(-scorer.score(items, signals, np.arange(1, len(scorer.catalog) + 1)))
    follower = int(order[-1]) + 1
    assert follower not in model_only.tolist() and follower not in items.tolist()
    blended = Scorer.load(
        _with_blend(
            tmp_path, scorer, {latest: [(follower, 0.5)]}, {"weight": 100.0, "recent": 1, "recent_decay": 1}
        )
    )
    candidates, scores = blended.retrieve(items, signals, 128, exclude=items)
    assert int(candidates[0]) == follower
    head = scorer.score(items, signals, np.array([follower]))[0]
    assert scores[0] == pytest.approx(head + 50.0, abs=0.01)
    assert len(candidates) == 128 and np.all(np.diff(scores) <= 0)
    # every other candidate keeps its model score: the rest of the list is the model's, one place down
    assert candidates[1:].tolist() == model_only[:127].tolist()
    # an excluded follower never comes back, and `score()` stays the model alone
    excluded = np.concatenate([items, [follower]])
    assert follower not in blended.retrieve(items, signals, 128, exclude=excluded)[0].tolist()
    np.testing.assert_array_equal(
        blended.score(items, signals, np.arange(1, 200)), scorer.score(items, signals, np.arange(1, 200))
    )


def test_an_artifact_without_blend_settings_ignores_its_table(tmp_path, scorer, history):
    items, signals = history
    plain = Scorer.load(_with_blend(tmp_path, scorer, {int(items[-1]): [(7, 1.0)]}, None))
    assert plain.blend is None and plain._neighbours is None
    model_alone = Scorer.load(MODEL_DIR)
    model_alone.blend = None
    np.testing.assert_array_equal(
        plain.retrieve(items, signals, 50)[0], model_alone.retrieve(items, signals, 50)[0]
    )


def test_blend_settings_without_their_table_fail_to_load(tmp_path, scorer):
    from rtrec.cooccurrence import COOCCURRENCE_FILE

    model = _with_blend(tmp_path, scorer, {1: [(2, 1.0)]}, {"weight": 1.0, "recent": 1, "recent_decay": 1})
    (model / COOCCURRENCE_FILE).unlink()
    with pytest.raises(ModelUnavailable):
        Scorer.load(model)


def test_the_index_path_blends_in_followers_too(tmp_path, scorer, history):
    from rtrec.item_index import ITEM_INDEX_FILE, ItemIndex

    items, signals = history
    order = np.argsort(-scorer.score(items, signals, np.arange(1, len(scorer.catalog) + 1)))
    follower, excluded_follower = int(order[-1]) + 1, int(order[-2]) + 1
    serving = {"weight": 100.0, "recent": 1, "recent_decay": 1}
    model = _with_blend(
        tmp_path, scorer, {int(items[-1]): [(follower, 0.5), (excluded_follower, 0.6)]}, serving
    )
    ItemIndex.build(
        scorer.item_vectors[1:], ids=np.arange(1, len(scorer.catalog) + 1), lists=16, n_probe=4
    ).save(model / ITEM_INDEX_FILE)
    indexed = Scorer.load(model)
    assert indexed._index is not None
    exclude = np.concatenate([items, [excluded_follower]])
    candidates, _ = indexed.retrieve(items, signals, 20, exclude=exclude)
    assert int(candidates[0]) == follower and excluded_follower not in candidates.tolist()
