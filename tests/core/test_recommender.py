"""The recommendation service over a small fake scorer: model path, cold start, degraded mode."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from dataio.movielens import GENRE_INDEX, GENRES
from rtrec import ranking
from rtrec.features import Catalog, HistoryStep
from rtrec.recommender import Recommender, RecommenderConfig
from rtrec.state import item_key

GENRE_CYCLE = [GENRE_INDEX[g] for g in ("Action", "Comedy", "Drama", "Horror")]


def make_catalog(n: int = 40) -> Catalog:
    return Catalog(
        item_ids=[f"i{i}" for i in range(1, n + 1)],
        categories=GENRES,
        category_ids=[[GENRE_CYCLE[i % 4]] for i in range(n)],
        popularity=np.arange(n, 0, -1, dtype=np.float32),  # i1 most popular
    )


class FakeScorer:
    """Scores an item by how many history items share its genre (popularity breaks ties)."""

    version = "fake-1"

    def __init__(self, catalog: Catalog, broken: bool = False) -> None:
        self.catalog = catalog
        self.broken = broken
        self.max_results: int | None = None
        self.retrieve_calls: list[dict] = []
        self._genres = catalog.category_matrix()

    def _all_scores(self, items: np.ndarray) -> np.ndarray:
        if self.broken:
            raise RuntimeError("interpreter exploded")
        user = self._genres[items[items > 0]].sum(axis=0)
        pop = np.concatenate([[0.0], self.catalog.popularity / 1000.0])
        return (self._genres @ user + pop).astype(np.float32)

    def interests(self, items, signals):
        user = self._genres[items[items > 0]].sum(axis=0) + 1e-3
        if self.broken:
            raise RuntimeError("interpreter exploded")
        return (user / user.sum()).astype(np.float32)

    def score(self, items, signals, candidates):
        return self._all_scores(items)[candidates]

    def retrieve(self, items, signals, top_m, exclude=None):
        self.retrieve_calls.append(
            {"top_m": top_m, "exclude": None if exclude is None else set(exclude.tolist())}
        )
        scores = self._all_scores(items)
        scores[0] = -np.inf
        if exclude is not None:
            scores[exclude] = -np.inf
        order = np.argsort(-scores, kind="stable")[:top_m]
        order = order[np.isfinite(scores[order])][: self.max_results]
        return order, scores[order]


class State:
    def __init__(self, steps=(), seen=None, interests=None):
        self._steps = [HistoryStep(item, "click") for item in steps]
        seen_ids = list(seen if seen is not None else dict.fromkeys(steps))
        self.seen = np.array([item_key(i) for i in seen_ids], dtype="<u4")
        self.interests = interests or {}

    def history(self):
        return list(self._steps)


@pytest.fixture
def catalog():
    return make_catalog()


@pytest.fixture
def scorer(catalog):
    return FakeScorer(catalog)


@pytest.fixture
def service(catalog, scorer):
    return Recommender(catalog, scorer, RecommenderConfig(retrieval_size=30, exploration_share=0.0))


def rng():
    return np.random.default_rng(0)


def ids(outcome):
    return [make_catalog().item_at(p.index) for p in outcome.picks]


def genres_of(catalog, outcome):
    return [catalog.categories_of(catalog.item_at(p.index))[0] for p in outcome.picks]


def test_a_user_without_state_gets_popular_items(service):
    outcome = service.recommend(None, 5, rng())
    assert ids(outcome)[:2] == ["i1", "i2"]
    assert {p.reason for p in outcome.picks} == {ranking.REASON_POPULAR}
    assert outcome.source == "popular" and not outcome.degraded


def test_history_drives_the_model_and_seen_items_never_come_back(service, catalog, scorer):
    horror = ["i4", "i8", "i12"]  # every 4th item is Horror
    outcome = service.recommend(State(horror), 4, rng())
    assert outcome.source == "model" and not outcome.degraded
    assert {p.reason for p in outcome.picks} == {ranking.REASON_MODEL}
    assert not set(ids(outcome)) & set(horror)
    assert genres_of(catalog, outcome)[0] == "Horror"
    assert scorer.retrieve_calls[-1]["top_m"] == 30
    assert {catalog.index_of(i) for i in horror} <= scorer.retrieve_calls[-1]["exclude"]
    assert outcome.candidates_scored > 0


def test_the_genre_cap_keeps_the_list_diverse(catalog, scorer):
    service = Recommender(catalog, scorer, RecommenderConfig(genre_cap_share=0.5, exploration_share=0.0))
    outcome = service.recommend(State(["i4", "i8"]), 6, rng())
    assert genres_of(catalog, outcome).count("Horror") == 3


def test_exploration_slots_are_marked(catalog, scorer):
    service = Recommender(catalog, scorer, RecommenderConfig(exploration_share=0.2))
    outcome = service.recommend(State(["i4"]), 10, rng())
    assert [p.reason for p in outcome.picks].count(ranking.REASON_EXPLORE) == 2
    assert outcome.picks[0].reason == ranking.REASON_MODEL


def test_genre_filter_and_explicit_exclusions_hold_on_the_model_path(service, catalog):
    outcome = service.recommend(State(["i4"]), 5, rng(), filter_genres=["Comedy"], exclude_item_ids=["i2"])
    assert set(genres_of(catalog, outcome)) == {"Comedy"}
    assert "i2" not in ids(outcome)
    assert len(outcome.picks) == 5


def test_a_short_model_pool_is_topped_up_with_popular_items(catalog, scorer):
    scorer.max_results = 3
    service = Recommender(catalog, scorer, RecommenderConfig(exploration_share=0.0))
    outcome = service.recommend(State(["i4"]), 8, rng())
    reasons = [p.reason for p in outcome.picks]
    assert len(outcome.picks) == 8 and len(set(ids(outcome))) == 8
    assert reasons[:3] == [ranking.REASON_MODEL] * 3
    assert set(reasons[3:]) == {ranking.REASON_POPULAR}


def test_all_unknown_recent_items_still_get_an_answer_leaning_on_state_interests(service, catalog):
    state = State(["x1", "x2"], interests={"Drama": 3.0})
    outcome = service.recommend(state, 4, rng())
    assert outcome.source == "cold_start" and not outcome.degraded
    assert {p.reason for p in outcome.picks} == {ranking.REASON_COLD_START}
    assert genres_of(catalog, outcome)[0] == "Drama"


def test_a_failing_model_call_degrades_to_popular_and_still_excludes_seen(catalog):
    service = Recommender(catalog, FakeScorer(catalog, broken=True))
    outcome = service.recommend(State(["i1", "i2"]), 5, rng())
    assert outcome.degraded and "interpreter exploded" in outcome.failure
    assert {p.reason for p in outcome.picks} == {ranking.REASON_POPULAR}
    assert not {"i1", "i2"} & set(ids(outcome))
    assert len(outcome.picks) == 5


@pytest.mark.parametrize(
    "garbage",
    [
        (np.array([0, 3]), np.array([1.0, 0.5])),  # padding index
        (np.array([3, 99]), np.array([1.0, 0.5])),  # out of the catalog
        (np.array([3, 4]), np.array([1.0])),  # scores do not match
    ],
)
def test_malformed_retrieval_output_degrades_instead_of_failing(catalog, scorer, garbage):
    scorer.retrieve = lambda *args, **kwargs: garbage
    outcome = Recommender(catalog, scorer).recommend(State(["i4"]), 3, rng())
    assert outcome.degraded and "malformed" in outcome.failure
    assert len(outcome.picks) == 3


def test_a_model_that_cannot_load_leaves_a_catalog_only_service(tmp_path):
    (tmp_path / "items.json").write_text(json.dumps(make_catalog().to_json()))
    (tmp_path / "model.tflite").write_bytes(b"not a model")
    service = Recommender.from_model_dir(tmp_path)
    assert service.scorer is None and service.model_version is None
    assert "model failed to load" in service.load_error
    outcome = service.recommend(State(["i1"]), 3, rng())
    assert outcome.degraded and ids(outcome) == ["i2", "i3", "i4"]
    assert service.rank(State(["i1"]), ["i9", "i3"]).degraded
    assert service.interests(State(["i1"])).degraded


def test_without_any_artifact_every_call_answers_empty_and_degraded(tmp_path):
    shutil.rmtree(tmp_path)
    service = Recommender.from_model_dir(tmp_path)
    assert service.catalog is None and "catalog failed to load" in service.load_error
    assert service.recommend(None, 3, rng()).degraded
    rank = service.rank(None, ["a", "a", "b"])
    assert rank.degraded and rank.unknown_item_ids == ["a", "b"]
    assert service.interests(None).interests == {}  # without a catalog there is no vocabulary


def test_rank_orders_known_candidates_and_reports_unknown_ones(service):
    outcome = service.rank(State(["i4", "i8"]), ["i1", "nope", "i12", "i1", "i16"])
    assert ids(outcome) == ["i12", "i16", "i1"]
    assert outcome.unknown_item_ids == ["nope"]
    assert outcome.candidates_scored == 3
    assert outcome.picks[0].score > outcome.picks[-1].score


def test_rank_for_a_new_user_orders_by_popularity(service):
    outcome = service.rank(None, ["i30", "i3", "i10"])
    assert ids(outcome) == ["i3", "i10", "i30"]
    assert {p.reason for p in outcome.picks} == {ranking.REASON_POPULAR}


def test_rank_survives_a_failing_model(catalog):
    outcome = Recommender(catalog, FakeScorer(catalog, broken=True)).rank(State(["i4"]), ["i30", "i3"])
    assert outcome.degraded and ids(outcome) == ["i3", "i30"]


def test_rank_with_only_unknown_ids_is_empty_not_an_error(service):
    outcome = service.rank(State(["i4"]), ["x", "y"])
    assert outcome.picks == [] and outcome.unknown_item_ids == ["x", "y"]


def test_interests_come_from_the_model_then_state_then_the_catalog_prior(service, catalog):
    model = service.interests(State(["i4", "i8"]))
    assert model.source == "model"
    assert max(model.interests, key=model.interests.get) == "Horror"
    from_state = service.interests(State(["x"], interests={"Comedy": 2.0, "Drama": 2.0}))
    assert from_state.source == "state" and from_state.interests["Comedy"] == pytest.approx(0.5)
    prior = service.interests(None)
    assert prior.source == "popular"
    assert list(prior.interests) == list(GENRES)
    for outcome in (model, from_state, prior):
        assert sum(outcome.interests.values()) == pytest.approx(1.0, abs=1e-5)


def test_exploration_is_spent_on_a_share_of_answers_only(catalog, scorer):
    config = RecommenderConfig(retrieval_size=30, exploration_share=0.2)
    explore_always = Recommender(catalog, scorer, config)
    explore_some = Recommender(catalog, scorer, replace(config, exploration_rate=0.25))
    state = State(["i1", "i5", "i9"])

    def exploring(service: Recommender) -> int:
        return sum(
            any(
                p.reason == ranking.REASON_EXPLORE
                for p in service.recommend(state, 10, np.random.default_rng(seed)).picks
            )
            for seed in range(200)
        )

    assert exploring(explore_always) == 200
    assert 25 <= exploring(explore_some) <= 75
