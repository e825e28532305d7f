"""Items added after training, on the committed model: their metadata vectors, the scorer's extra rows
(exact and IVF paths against brute force), exploration that goes to them first, and the recommender
following catalog changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rtrec import ranking
from rtrec.catalog import CatalogItem, ItemFilter, parse_filter
from rtrec.features import HistoryStep, encode_history
from rtrec.live_catalog import LiveCatalog
from rtrec.recommender import Recommender, RecommenderConfig
from rtrec.scorer import Scorer
from rtrec.state import item_key
from rtrec.stores.catalog import CatalogChange

MODEL_DIR = Path(os.environ["MODEL_DIR"])


@pytest.fixture
def scorer() -> Scorer:
    return Scorer.load(MODEL_DIR)  # per test: set_extra_items changes it


@pytest.fixture
def history(scorer):
    steps = [HistoryStep(scorer.catalog.item_at(i), "rating", 5.0) for i in (1, 50, 100, 172, 181, 258)]
    return encode_history(steps, scorer.catalog)


class Feed:
    """The catalog table's change feed, written by the test."""

    def __init__(self) -> None:
        self.changes: list[CatalogChange] = []
        self.clock = 1_000

    def put(self, *items: CatalogItem) -> None:
        for item in items:
            self.clock += 1
            self.changes.append(CatalogChange(item, False, self.clock))

    def delete(self, item_id: str) -> None:
        self.clock += 1
        self.changes.append(CatalogChange(CatalogItem(item_id), True, self.clock))

    def changes_since(self, updated_after_ms: int) -> list[CatalogChange]:
        return [c for c in self.changes if c.updated_at > updated_after_ms]


# ---------- the scorer's extra rows ----------


def test_an_extra_row_scores_like_the_model_row_it_copies(scorer, history):
    copies = [5, 17, 40]
    scorer.set_extra_items(scorer._head.embedding[copies])
    size = len(scorer.catalog)
    indices, scores = scorer.retrieve(*history, size + 3)
    by_index = dict(zip(indices.tolist(), scores.tolist(), strict=True))
    for row, original in enumerate(copies):
        assert by_index[size + 1 + row] == pytest.approx(by_index[original], abs=1e-5)
    assert np.all(np.diff(scores) <= 0)


def test_the_extra_shortlist_is_the_brute_force_top_m(scorer, history):
    rng = np.random.default_rng(3)
    size = len(scorer.catalog)
    extra = scorer.item_vectors[rng.integers(1, size + 1, 30)] * rng.uniform(0.5, 2.0, (30, 1))
    scorer.set_extra_items(extra)
    user = scorer.user_vector(*history)
    excluded = np.array([size + 2, size + 7, 3])
    affinity = np.concatenate([scorer.item_vectors @ user, extra.astype(np.float32) @ user])
    affinity[[0, *excluded]] = -np.inf
    brute = set(np.argsort(-affinity, kind="stable")[:50].tolist())
    blend, scorer.blend = scorer.blend, None  # the shortlist alone: no co-occurrence followers
    try:
        indices, scores = scorer.retrieve(*history, 50, exclude=excluded)
    finally:
        scorer.blend = blend
    assert set(indices.tolist()) == brute
    assert any(i > size for i in indices) and not set(excluded) & set(indices.tolist())
    # the head's scores of the extra rows are the head applied to those vectors
    head_scores = scorer._head(user, indices)
    np.testing.assert_allclose(scores, head_scores, rtol=0, atol=1e-6)


def test_the_ivf_path_scans_the_extra_rows_exactly(tmp_path, scorer, history):
    import shutil

    from rtrec.item_index import ITEM_INDEX_FILE, ItemIndex

    shutil.copytree(MODEL_DIR, tmp_path / "model")
    size = len(scorer.catalog)
    index = ItemIndex.build(scorer.item_vectors[1:], ids=np.arange(1, size + 1), lists=16, n_probe=16)
    index.save(tmp_path / "model" / ITEM_INDEX_FILE)
    indexed = Scorer.load(tmp_path / "model")
    affinity = scorer.item_vectors @ scorer.user_vector(*history)
    extra = scorer.item_vectors[np.argsort(-affinity)[:3]] * 3.0  # sure to be in any top 40
    indexed.set_extra_items(extra)
    scorer.set_extra_items(extra)
    exact, _ = scorer.retrieve(*history, 40)
    approximate, _ = indexed.retrieve(*history, 40)
    assert {size + 1, size + 2, size + 3} <= set(approximate.tolist())
    assert len(set(exact.tolist()) & set(approximate.tolist())) >= 38
    indexed.set_extra_items(extra[:1])  # a smaller set replaces the delta list, it does not add to it
    assert indexed._index is not None and indexed._index.delta_size == 1
    assert max(indexed.retrieve(*history, 40)[0]) == size + 1


def test_new_items_are_added_to_the_shortlist_when_asked(scorer, history):
    size = len(scorer.catalog)
    scorer.set_extra_items(scorer.item_vectors[[10, 20, 30, 40]] * 0.01)  # never in a top-M by affinity
    user = scorer.user_vector(*history)
    assert max(scorer.retrieve(*history, 20)[0]) <= size
    indices, _ = scorer.retrieve(*history, 20, exclude=np.array([size + 1]), new_items=2)
    affinity = (scorer.item_vectors[[10, 20, 30, 40]] * 0.01) @ user
    affinity[0] = -np.inf
    best = {size + 1 + int(i) for i in np.argsort(-affinity)[:2]}
    assert {i for i in indices.tolist() if i > size} == best and len(indices) == 22


# ---------- metadata vectors ----------


def test_a_new_item_leans_to_the_items_with_its_exact_categories(scorer):
    feed = Feed()
    live = LiveCatalog(scorer.catalog, feed, refresh_s=0.0)
    model = scorer.catalog
    pair = next(ids for ids in model.category_ids if len(ids) == 2)
    names = tuple(model.categories[c] for c in pair)
    feed.put(
        CatalogItem("n-pair", names),
        CatalogItem("n-one", names[:1]),
        CatalogItem("n-none", ("Nothing the model knows",)),
    )
    live.refresh()
    vectors = live.new_item_vectors(scorer.item_vectors)
    rows = {live.item_at(int(i)): r for r, i in enumerate(live.new_indices())}
    exact = [i + 1 for i, ids in enumerate(model.category_ids) if sorted(ids) == sorted(pair)]
    exact_mean = scorer.item_vectors[exact].mean(axis=0)

    def cosine(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine(vectors[rows["n-pair"]], exact_mean) > cosine(vectors[rows["n-one"]], exact_mean)
    assert not vectors[rows["n-none"]].any()
    sharing = live.sharing_categories(live.index_of("n-pair"))
    sharing = sharing[sharing <= live.model_size]
    lengths = np.linalg.norm(scorer.item_vectors[sharing], axis=1)
    assert lengths.min() <= np.linalg.norm(vectors[rows["n-pair"]]) <= lengths.max()
    plain = live.new_item_vectors(scorer.item_vectors, power=0.0, keep_norm=False)
    np.testing.assert_allclose(
        plain[rows["n-one"]], scorer.item_vectors[sharing_of(live, "n-one")].mean(0), atol=1e-5
    )


def sharing_of(live: LiveCatalog, item_id: str) -> np.ndarray:
    sharing = live.sharing_categories(live.index_of(item_id))
    return sharing[sharing <= live.model_size]


# ---------- the recommender ----------


@pytest.fixture
def shop(scorer):
    feed = Feed()
    live = LiveCatalog(scorer.catalog, feed, refresh_s=0.0)
    recommender = Recommender(
        scorer.catalog, scorer, RecommenderConfig(exploration_share=0.1, exploration_rate=0.0), live=live
    )
    return recommender, feed


class State:
    def __init__(self, items: list[str]) -> None:
        self._steps = [HistoryStep(i, "rating", 5.0) for i in items]
        self.seen = np.array([item_key(i) for i in items], dtype="<u4")
        self.interests: dict = {}

    def history(self):
        return list(self._steps)


def fan(scorer) -> State:
    return State([scorer.catalog.item_at(i) for i in (1, 50, 100, 172, 181, 258)])


def recommend(recommender, state, k=10, **kwargs):
    outcome = recommender.recommend(state, k, np.random.default_rng(0), **kwargs)
    return [(recommender.item_id_at(p.index), p.reason) for p in outcome.picks]


def test_exploration_goes_to_the_best_new_item_first(shop, scorer):
    recommender, feed = shop
    drama = ("Drama",)
    feed.put(*(CatalogItem(f"new-{n}", drama, attributes={"price": float(n)}) for n in range(4)))
    recommender.live.refresh()
    picks = recommend(recommender, fan(scorer))
    fresh = [(i, reason) for i, reason in picks if i.startswith("new-")]
    assert len(picks) == 10 and fresh and all(reason in ("new_item", "model") for _, reason in fresh)
    assert sum(reason == "new_item" for _, reason in picks) == 1 and "explore" not in {r for _, r in picks}
    assert picks[0][1] == "model"
    # without new items and with random exploration off, no slot is spent on exploration
    feed.delete("new-0"), feed.delete("new-1"), feed.delete("new-2"), feed.delete("new-3")
    recommender.live.refresh()
    assert {reason for _, reason in recommend(recommender, fan(scorer))} == {"model"}


def test_new_item_rate_zero_keeps_new_items_out_of_the_exploration_slot(shop, scorer):
    recommender, feed = shop
    feed.put(*(CatalogItem(f"new-{n}", ("Drama",)) for n in range(3)))
    recommender.live.refresh()
    recommender.config = RecommenderConfig(exploration_share=0.1, exploration_rate=1.0, new_item_rate=0.0)
    reasons = [reason for _, reason in recommend(recommender, fan(scorer))]
    assert "new_item" not in reasons and reasons.count("explore") == 1


def test_the_new_item_picked_is_the_best_scored_one(shop, scorer):
    recommender, feed = shop
    feed.put(CatalogItem("new-a", ("Drama",)), CatalogItem("new-b", ("Documentary",)))
    recommender.live.refresh()
    new = recommender._current_new_items()
    items, signals = encode_history(fan(scorer).history(), scorer.catalog)
    user = scorer.user_vector(items, signals)
    size = len(scorer.catalog)
    head = scorer._head(user, np.array([size + 1, size + 2]))
    expected = recommender.live.item_at(size + 1 + int(np.argmax(head)))
    picks = recommend(recommender, fan(scorer))
    assert new is not None and [i for i, r in picks if r == "new_item"] == [expected]


def test_filters_seen_and_availability_hold_for_new_items(shop, scorer):
    recommender, feed = shop
    feed.put(
        CatalogItem("cheap", ("Drama",), attributes={"price": 5.0}),
        CatalogItem("dear", ("Drama",), attributes={"price": 500.0}),
        CatalogItem("gone", ("Drama",), available=False),
        CatalogItem("seen", ("Drama",)),
    )
    recommender.live.refresh()
    state = fan(scorer)
    state = State([step.item_id for step in state.history()] + ["seen"])
    priced = ItemFilter(frozenset(), parse_filter("price<=10"))
    picks = recommend(recommender, state, k=10, item_filter=priced)
    assert [i for i, _ in picks] == ["cheap"]  # no model item has a price; the model ranks the new one
    everything = [i for i, _ in recommend(recommender, state, k=200)]
    assert not {"gone", "seen"} & set(everything)
    comedies = recommend(recommender, state, k=10, filter_genres=["Comedy"])
    assert not {"cheap", "dear"} & {i for i, _ in comedies}
    assert "dear" not in [
        i for i, _ in recommend(recommender, state, k=10, exclude_item_ids=["dear", "cheap"])
    ]


def test_vectors_follow_catalog_changes(shop, scorer):
    recommender, feed = shop
    feed.put(CatalogItem("shifty", ("Drama",)))
    recommender.live.refresh()
    first = recommender._current_new_items()
    assert first is not None and recommender._current_new_items() is first  # once per change
    feed.put(CatalogItem("shifty", ("Horror",)))
    recommender.live.refresh()
    second = recommender._current_new_items()
    assert second is not None and second is not first
    assert not np.allclose(first.vectors, second.vectors)
    assert scorer.extra_items == 1
    np.testing.assert_array_equal(scorer._extra, second.vectors)
    feed.delete("shifty")
    recommender.live.refresh()
    assert recommender._current_new_items() is None and scorer.extra_items == 0


def test_similar_uses_the_same_vectors_as_retrieval(shop, scorer):
    recommender, feed = shop
    feed.put(CatalogItem("twin", ("Western",)))
    recommender.live.refresh()
    new = recommender._current_new_items()
    vectors = recommender._all_item_vectors(len(recommender.live))
    assert new is not None
    np.testing.assert_array_equal(vectors[len(scorer.catalog) + 1 :], new.vectors)
    outcome = recommender.similar("twin", 5)
    assert outcome is not None and len(outcome.picks) == 5


def test_rank_candidates_prefers_new_items_for_the_exploration_slot():
    indices = np.arange(1, 31)
    scores = np.linspace(3.0, 0.0, 30).astype(np.float32)
    genre_ids = [[i % 5] for i in range(30)]
    rules = ranking.RankingRules(k=10, genre_cap_share=1.0, exploration_share=0.2)
    rng = np.random.default_rng(1)
    picks = ranking.rank_candidates(indices, scores, genre_ids, rules, rng, new_items={25, 28, 3})
    reasons = {p.index: p.reason for p in picks}
    # new items never outrank the model's items for the exploitation slots; the best two new items explore
    assert reasons[3] == "new_item" and reasons[25] == "new_item" and 28 not in reasons
    assert [p.index for p in picks if p.reason == "model"] == [1, 2, 4, 5, 6, 7, 8, 9]
    # when the model's items run out, new items fill the list as model picks
    few = ranking.rank_candidates(
        indices[:12],
        scores[:12],
        genre_ids,
        rules,
        rng,
        new_items={2, 5, 7, 9, 10, 11},
        random_exploration=False,
    )
    assert [p.index for p in few if p.reason == "model"] == [1, 3, 4, 6, 8, 12, 2, 5]
    assert [p.index for p in few if p.reason == "new_item"] == [7, 9]
    quiet = ranking.rank_candidates(
        indices, scores, genre_ids, rules, rng, new_items={25}, random_exploration=False
    )
    assert [p.reason for p in quiet].count("new_item") == 1 and "explore" not in {p.reason for p in quiet}
    assert len(quiet) == 10
    none = ranking.rank_candidates(indices, scores, genre_ids, rules, rng, random_exploration=False)
    assert [p.index for p in none] == list(range(1, 11))


def test_a_shown_new_item_is_rotated_like_a_model_item(shop, scorer):
    """Rotation's multipliers cover the new items too: the new item shown a moment ago gives way."""
    from rtrec.rotation import Demotion

    recommender, feed = shop
    feed.put(*(CatalogItem(f"new-{n}", ("Drama",)) for n in range(3)))
    recommender.live.refresh()
    first = [i for i, reason in recommend(recommender, fan(scorer)) if reason == "new_item"]
    assert len(first) == 1
    shown = np.array([item_key(first[0])], dtype="<u4")
    demoted = Demotion(shown, np.array([1e-6]))
    again = recommend(recommender, fan(scorer), demotion=demoted)
    fresh = [i for i, reason in again if reason == "new_item"]
    assert len(again) == 10 and fresh and fresh[0] != first[0]
