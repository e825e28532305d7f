"""Ranking rules: exclusion, genre filter, per-genre cap, exploration, popularity fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataio.movielens import GENRE_INDEX, GENRES
from rtrec import ranking
from rtrec.ranking import Pick, RankingRules

ACTION, COMEDY, DRAMA = GENRE_INDEX["Action"], GENRE_INDEX["Comedy"], GENRE_INDEX["Drama"]


def genre_matrix(genre_ids: list[list[int]]) -> np.ndarray:
    matrix = np.zeros((len(genre_ids) + 1, len(GENRES)), dtype=bool)
    for row, genres in enumerate(genre_ids, start=1):
        matrix[row, genres] = True
    return matrix


def test_allowed_mask_blocks_padding_blocked_and_out_of_range_indices():
    mask = ranking.allowed_mask(5, blocked=[2, 4, 0, 99, -1])
    assert mask.tolist() == [False, True, False, True, False, True]


def test_allowed_mask_keeps_only_items_with_a_filtered_genre():
    genres = [[ACTION], [COMEDY], [ACTION, DRAMA], [DRAMA]]
    matrix = genre_matrix(genres)
    mask = ranking.allowed_mask(4, blocked=[3], genre_matrix=matrix, filter_genres={ACTION, DRAMA})
    assert np.flatnonzero(mask).tolist() == [1, 4]


def test_genre_filter_without_matrix_is_a_programming_error():
    with pytest.raises(ValueError, match="genre matrix"):
        ranking.allowed_mask(3, filter_genres={ACTION})


def test_diversify_caps_each_genre_and_counts_every_genre_of_an_item():
    genres = [[ACTION], [ACTION], [ACTION, COMEDY], [COMEDY], [DRAMA]]
    chosen = ranking.diversify([1, 2, 3, 4, 5], genres, count=3, cap=1)
    assert chosen == [0, 3, 4]  # items 2 and 3 would be a second Action item


def test_diversify_fills_with_the_best_skipped_items_when_the_cap_leaves_too_few():
    genres = [[ACTION]] * 4
    assert ranking.diversify([4, 3, 2, 1], genres, count=3, cap=1) == [0, 1, 2]


def test_diversify_exempts_filtered_genres_from_the_cap():
    genres = [[ACTION], [ACTION, COMEDY], [ACTION], [ACTION, COMEDY]]
    assert ranking.diversify([1, 2, 3, 4], genres, count=3, cap=1, exempt_genres={ACTION}) == [0, 1, 2]


def test_rules_derive_cap_and_exploration_slots_from_k():
    assert RankingRules(k=10, genre_cap_share=0.5, exploration_share=0.2).per_genre_cap == 5
    assert RankingRules(k=10, exploration_share=0.2).exploration_slots == 2
    assert RankingRules(k=5, exploration_share=0.1).exploration_slots == 0
    assert RankingRules(k=1, exploration_share=0.9).exploration_slots == 0


def test_uncertainty_is_highest_at_the_median_score():
    u = ranking.uncertainty(np.array([0.9, 0.5, 0.1], dtype=np.float32))
    assert u.argmax() == 1
    assert u.min() == pytest.approx(0.0)
    assert ranking.uncertainty(np.array([0.3, 0.3])).tolist() == [1.0, 1.0]


def _pool(n: int, genres_per_item: list[list[int]] | None = None):
    indices = np.arange(1, n + 1)
    scores = np.linspace(1.0, 0.0, n).astype(np.float32)
    genre_ids = genres_per_item or [[i % len(GENRES)] for i in range(n)]
    return indices, scores, genre_ids


def test_rank_candidates_keeps_the_model_best_first_and_places_exploration_inside():
    indices, scores, genre_ids = _pool(100)
    rules = RankingRules(k=10, exploration_share=0.2)
    picks = ranking.rank_candidates(indices, scores, genre_ids, rules, np.random.default_rng(7))
    assert len(picks) == 10
    assert picks[0] == Pick(1, 1.0, ranking.REASON_MODEL)
    reasons = [p.reason for p in picks]
    assert reasons.count(ranking.REASON_EXPLORE) == 2
    model_picks = [p.index for p in picks if p.reason == ranking.REASON_MODEL]
    assert model_picks == list(range(1, 9))
    explore = [p.index for p in picks if p.reason == ranking.REASON_EXPLORE]
    assert all(i > 8 for i in explore)
    assert len({p.index for p in picks}) == 10


def test_exploration_prefers_items_the_model_is_unsure_of():
    indices, scores, genre_ids = _pool(201)
    rules = RankingRules(k=10, exploration_share=0.1)
    drawn = []
    for seed in range(200):
        picks = ranking.rank_candidates(indices, scores, genre_ids, rules, np.random.default_rng(seed))
        drawn += [p.index for p in picks if p.reason == ranking.REASON_EXPLORE]
    distance_from_middle = np.abs(np.array(drawn) - 105)
    assert np.median(distance_from_middle) < 40  # uniform sampling of 10..201 would give ~48


def test_rank_candidates_is_reproducible_for_a_seed_and_returns_what_the_pool_has():
    indices, scores, genre_ids = _pool(50)
    rules = RankingRules(k=10, exploration_share=0.3)
    a = ranking.rank_candidates(indices, scores, genre_ids, rules, np.random.default_rng(1))
    b = ranking.rank_candidates(indices, scores, genre_ids, rules, np.random.default_rng(1))
    assert a == b
    small = ranking.rank_candidates(indices[:4], scores[:4], genre_ids, rules, np.random.default_rng(1))
    assert [p.index for p in small] == [1, 2, 3, 4]
    assert all(p.reason == ranking.REASON_MODEL for p in small)


def test_rank_candidates_applies_the_genre_cap():
    genres = [[ACTION]] * 10 + [[COMEDY]] * 10 + [[DRAMA]] * 10
    indices, scores, _ = _pool(30)
    rules = RankingRules(k=6, genre_cap_share=0.3, exploration_share=0.0)
    picks = ranking.rank_candidates(indices, scores, genres, rules, np.random.default_rng(0))
    assert [p.index for p in picks] == [1, 2, 11, 12, 21, 22]


def test_popular_orders_by_popularity_skips_blocked_and_normalises_scores():
    popularity = np.array([5, 50, 20, 100], dtype=np.float32)
    genres = [[ACTION], [COMEDY], [DRAMA], [ACTION]]
    mask = ranking.allowed_mask(4, blocked=[4])
    picks = ranking.popular(popularity, mask, genres, RankingRules(k=2))
    assert picks == [Pick(2, 0.5, ranking.REASON_POPULAR), Pick(3, 0.2, ranking.REASON_POPULAR)]


def test_popular_leans_toward_the_users_genres():
    popularity = np.array([100, 90, 80], dtype=np.float32)
    genres = [[ACTION], [COMEDY], [DRAMA]]
    weights = np.zeros(len(GENRES))
    weights[DRAMA] = 1.0
    picks = ranking.popular(
        popularity,
        ranking.allowed_mask(3),
        genres,
        RankingRules(k=3),
        reason=ranking.REASON_COLD_START,
        genre_weights=weights,
        genre_matrix=genre_matrix(genres).astype(np.float32),
    )
    assert [p.index for p in picks] == [3, 1, 2]
    assert {p.reason for p in picks} == {ranking.REASON_COLD_START}


def test_popular_with_nothing_allowed_is_empty():
    assert ranking.popular(np.ones(3), np.zeros(4, dtype=bool), [[0]] * 3, RankingRules(k=3)) == []


def test_top_up_adds_only_missing_items_up_to_k():
    picks = [Pick(1, 0.9, "model")]
    fallback = [Pick(1, 1.0, "popular"), Pick(5, 0.8, "popular"), Pick(6, 0.7, "popular")]
    assert ranking.top_up(picks, fallback, 2) == [Pick(1, 0.9, "model"), Pick(5, 0.8, "popular")]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 120),
    k=st.integers(1, 100),
    cap_share=st.floats(0.05, 1.0),
    explore_share=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_rank_candidates_never_repeats_items_and_never_exceeds_k(n, k, cap_share, explore_share, seed):
    rng = np.random.default_rng(seed)
    indices = rng.permutation(np.arange(1, 1000))[:n]
    scores = rng.random(n).astype(np.float32)
    genre_ids = [sorted(set(rng.integers(0, len(GENRES), size=2).tolist())) for _ in range(999)]
    rules = RankingRules(k=k, genre_cap_share=cap_share, exploration_share=explore_share)
    picks = ranking.rank_candidates(indices, scores, genre_ids, rules, rng)
    chosen = [p.index for p in picks]
    assert len(chosen) == min(k, n)
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(indices.tolist())
    assert picks[0].reason == ranking.REASON_MODEL
    assert picks[0].score == pytest.approx(float(scores.max()))
