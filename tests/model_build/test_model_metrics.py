"""Ranking metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_build.metrics import hit_rate, mrr, ndcg, summary, target_rank, top_k, top_k_agreement


def test_target_rank_excludes_padding_and_seen_items():
    scores = np.array([9.0, 0.1, 0.9, 0.5, 0.7])  # index 0 is padding
    assert target_rank(scores, 3) == 2  # 0.9 and 0.7 are better
    assert target_rank(scores, 3, seen=np.array([2])) == 1
    assert target_rank(scores, 2, seen=np.array([2, 4])) == 0  # the target itself is never excluded


def test_ties_count_against_the_target():
    assert target_rank(np.array([0.0, 1.0, 1.0, 1.0]), 2) == 2


def test_metrics_on_hand_computed_ranks():
    ranks = np.array([0, 1, 9, 10, 50])
    assert hit_rate(ranks) == pytest.approx(3 / 5)
    assert ndcg(ranks) == pytest.approx((1.0 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert mrr(ranks) == pytest.approx((1.0 + 0.5 + 0.1) / 5)
    assert summary(ranks, 1) == {"HR@1": 0.2, "NDCG@1": 0.2, "MRR@1": 0.2}


def test_top_k_and_agreement():
    scores = np.array([5.0, 0.1, 0.9, 0.5, 0.7, 0.3])
    assert top_k(scores, 3).tolist() == [2, 4, 3]
    assert top_k(scores, 2, seen=np.array([2])).tolist() == [4, 3]
    assert top_k_agreement(np.array([1, 2, 3, 4]), np.array([4, 3, 9, 8]), k=4) == 0.5
