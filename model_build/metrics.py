"""Ranking metrics for leave-one-out evaluation (one held-out item per user), numpy only."""

from __future__ import annotations

import numpy as np


def target_rank(scores: np.ndarray, target: int, seen: np.ndarray | None = None) -> int:
    """0-based rank of `target` among all scored items, with `seen` items and index 0 excluded.

    Ties count against the target (pessimistic), so a constant scorer cannot look good.
    """
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[0] = -np.inf
    if seen is not None and len(seen):
        seen = np.asarray(seen)
        seen = seen[seen != target]
        scores[seen] = -np.inf
    target_score = scores[target]
    others = np.delete(scores, target)
    return int(np.sum(others >= target_score))


def hit_rate(ranks: np.ndarray, k: int = 10) -> float:
    ranks = np.asarray(ranks)
    return float(np.mean(ranks < k)) if ranks.size else 0.0


def ndcg(ranks: np.ndarray, k: int = 10) -> float:
    """With one relevant item the ideal DCG is 1, so NDCG = 1 / log2(rank + 2) inside the top k."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def mrr(ranks: np.ndarray, k: int = 10) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return 0.0
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)))


def summary(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    return {f"HR@{k}": hit_rate(ranks, k), f"NDCG@{k}": ndcg(ranks, k), f"MRR@{k}": mrr(ranks, k)}


def top_k(scores: np.ndarray, k: int, seen: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best items (index 0 and seen excluded), best first."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    scores[0] = -np.inf
    if seen is not None and len(seen):
        scores[np.asarray(seen)] = -np.inf
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best], kind="stable")]


def top_k_agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    """|top-k(reference) ∩ top-k(other)| / k."""
    return len(set(reference[:k].tolist()) & set(other[:k].tolist())) / float(k)
