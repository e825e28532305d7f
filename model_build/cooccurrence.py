"""Item-to-item transitions for the serving blend (``rtrec.cooccurrence``): counted, trimmed, tuned.

python -m model_build.cooccurrence [--data movielens|ecommerce|DIR] [--model-dir DIR]

``count_neighbours`` counts, over each user's training sequence of new items, how often item j came
within ``window`` steps after item i (a step d apart weighs ``decay ** (d - 1)``), turns each row into
P(j | i) and keeps its ``top_n`` strongest followers. ``choose`` picks the window, the decay and the
serving knobs (how many recent items vote, how their votes decay, the weight added to the model's
logits) by NDCG@10 on the **validation** split, with the artifact's own scorer over the whole
catalogue (seen items excluded, ties against the target, as the report measures). ``weight = 0``
is in the grid: if no blend helps on validation, the artifact ships without one.

Run as a module it adds (or replaces) the blend in an existing artifact: the model build calls the
same functions (``attach``), so ``make model`` writes it and a rebuild reproduces it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_build.data import Examples, UserSplit, new_item_positions
from rtrec.cooccurrence import COOCCURRENCE_FILE, ItemNeighbours
from rtrec.features import Catalog

TOP_N = 50  # followers kept per item: the votes of five recent items give at most 250 extra candidates
# The grid (180 points): a wider one (448 points: windows and recent items up to 5, window decay 1.0
# too) found nothing better by more than 0.0005 NDCG@10 on either dataset's validation split, and took
# 6 minutes on e-commerce.
WINDOWS = (1, 2, 3)  # steps after an item that count as following it
WINDOW_DECAY = 0.5  # a follower d steps later counts WINDOW_DECAY ** (d - 1)
RECENT = (1, 2, 3)
RECENT_DECAYS = (0.5, 0.8)
# What one unit of vote (a probability) adds to a logit; the largest leaves the model only breaking ties.
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0)
K = 10


def sequences(splits: list[UserSplit], catalog: Catalog) -> list[list[int]]:
    """Each user's training part as model indices of new items, in order (repeats left out)."""
    out = []
    for split in splits:
        steps = split.train
        indices = [catalog.index_of(steps[p].item_id) for p in new_item_positions(steps)]
        out.append([i for i in indices if i])
    return out


def count_neighbours(
    user_sequences: list[list[int]], num_items: int, window: int, decay: float, top_n: int = TOP_N
) -> ItemNeighbours:
    """P(j | i) over the followers of i within `window` steps (weight decay ** (d - 1)), top_n per row."""
    size = num_items + 1
    keys: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for sequence in user_sequences:
        items = np.asarray(sequence, dtype=np.int64)
        for distance in range(1, window + 1):
            if items.size <= distance:
                break
            keys.append(items[:-distance] * size + items[distance:])
            values.append(np.full(items.size - distance, decay ** (distance - 1), dtype=np.float64))
    if not keys:
        return ItemNeighbours(np.zeros(size + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(values))
    rows, following = unique // size, unique % size
    keep = rows != following
    rows, following, counts = rows[keep], following[keep], counts[keep]
    totals = np.bincount(rows, weights=counts, minlength=size)
    probability = counts / totals[rows]
    # strongest first within each row (ties: lower index first, so the order is reproducible)
    order = np.lexsort((following, -probability, rows))
    rows, following, probability = rows[order], following[order], probability[order]
    starts = np.searchsorted(rows, np.arange(size + 1))
    rank = np.arange(rows.size) - starts[rows]
    kept = rank < top_n
    rows, following, probability = rows[kept], following[kept], probability[kept]
    indptr = np.searchsorted(rows, np.arange(size + 1))
    return ItemNeighbours(indptr, following.astype(np.int32), probability.astype(np.float32))


def votes_matrix(
    neighbours: ItemNeighbours, history_items: np.ndarray, recent: int, recent_decay: float
) -> np.ndarray:
    """Dense votes [users, N + 1], the same numbers ``ItemNeighbours.votes`` gives the serving path."""
    out = np.zeros((len(history_items), len(neighbours) + 1), dtype=np.float32)
    for row, items in enumerate(history_items):
        candidates, vote = neighbours.votes(items, recent, recent_decay)
        out[row, candidates] = vote
    return out


def mask_seen(scores: np.ndarray, examples: Examples) -> np.ndarray:
    """`scores` with index 0 and each user's seen items (but the target) at -inf (in place)."""
    scores[:, 0] = -np.inf
    for row, seen in enumerate(examples.seen):
        scores[row, seen[seen != examples.targets[row]]] = -np.inf
    return scores


def ranks(masked_scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among the finite scores, ties against the target
    (model_build.metrics.target_rank for a whole matrix at once, after `mask_seen`)."""
    target = masked_scores[np.arange(len(masked_scores)), targets]
    return (masked_scores >= target[:, None]).sum(axis=1) - 1


def _ndcg(rank: np.ndarray) -> tuple[float, float]:
    hit = rank < K
    return float(hit.mean()), float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())


@dataclass
class Choice:
    window: int
    decay: float
    recent: int
    recent_decay: float
    weight: float
    hr: float
    ndcg: float

    def serving(self) -> dict[str, Any]:
        return {"weight": self.weight, "recent": self.recent, "recent_decay": self.recent_decay}


def sparse_votes(
    neighbours: ItemNeighbours, history_items: np.ndarray, recent: int, recent_decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """Votes per user as padded arrays (candidates [users, V], 0 = none; votes [users, V])."""
    rows = [neighbours.votes(items, recent, recent_decay) for items in history_items]
    width = max(1, max(len(c) for c, _ in rows))
    candidates = np.zeros((len(rows), width), dtype=np.int64)
    votes = np.zeros((len(rows), width), dtype=np.float32)
    for row, (c, v) in enumerate(rows):
        candidates[row, : len(c)], votes[row, : len(v)] = c, v
    return candidates, votes


class _Ranker:
    """Ranks of the targets under `model + weight × votes`, exact for ranks below K, without
    materialising [users, items] per grid point: an item without a vote keeps its model score, so
    only the best model scores and the voted items matter."""

    def __init__(self, masked: np.ndarray, targets: np.ndarray, depth: int) -> None:
        self.masked, self.targets = masked, targets
        depth = min(depth, masked.shape[1] - 1)
        best = -np.partition(-masked, depth - 1, axis=1)[:, :depth]
        self.best = np.sort(best, axis=1)[:, ::-1]  # the `depth` best model scores per user, best first
        self.target_score = masked[np.arange(len(targets)), targets]

    def ranks(self, candidates: np.ndarray, votes: np.ndarray, weight: float) -> np.ndarray:
        rows = np.arange(len(self.targets))[:, None]
        score = np.where(candidates > 0, self.masked[rows, candidates], -np.inf)
        is_target = candidates == self.targets[:, None]
        target_vote = (votes * is_target).sum(axis=1)
        final = self.target_score + np.float32(weight) * target_vote
        above = (self.best >= final[:, None]).sum(axis=1)  # items at or above, before any vote
        voted_above = (score >= final[:, None]).sum(axis=1)  # of those, the voted ones (and the target)
        blended = score + np.float32(weight) * votes
        voted_after = ((blended >= final[:, None]) & ~is_target).sum(axis=1)
        unvoted_target = ~is_target.any(axis=1)
        rank = above - voted_above + voted_after - unvoted_target
        # below the `depth` best, at least depth - V unvoted items beat the target: a miss either way
        return np.where(final < self.best[:, -1], self.best.shape[1], rank)


def choose(
    model_scores: np.ndarray,
    examples: Examples,
    user_sequences: list[list[int]],
    num_items: int,
    grid: dict[str, tuple] | None = None,
) -> tuple[Choice, list[dict[str, Any]]]:
    """The best blend on `examples` (validation) by NDCG@10 (then HR@10); every point measured.

    model_scores: [users, N + 1] the artifact's logits over the whole catalogue for these users (seen
    items are set to -inf in place: a 20,000-item catalogue makes a copy costly).
    """
    grid = {
        "window": WINDOWS,
        "decay": (WINDOW_DECAY,),
        "recent": RECENT,
        "recent_decay": RECENT_DECAYS,
        "weight": WEIGHTS,
        **(grid or {}),
    }
    masked = mask_seen(model_scores, examples)
    ranker = _Ranker(masked, examples.targets, depth=K + max(grid["recent"]) * TOP_N + 1)
    measured = []
    for window, decay in itertools.product(grid["window"], grid["decay"]):
        if window == 1 and decay != grid["decay"][0]:
            continue  # one step: the decay does not matter
        neighbours = count_neighbours(user_sequences, num_items, window, decay)
        for recent, recent_decay in itertools.product(grid["recent"], grid["recent_decay"]):
            if recent == 1 and recent_decay != grid["recent_decay"][0]:
                continue  # one voter: the decay does not matter
            candidates, votes = sparse_votes(neighbours, examples.items, recent, recent_decay)
            for weight in grid["weight"]:
                hr, ndcg = _ndcg(ranker.ranks(candidates, votes, weight))
                measured.append(
                    {
                        "window": window,
                        "decay": decay,
                        "recent": recent,
                        "recent_decay": recent_decay,
                        "weight": weight,
                        "HR@10": round(hr, 4),
                        "NDCG@10": round(ndcg, 4),
                    }
                )
    best = max(measured, key=lambda m: (m["NDCG@10"], m["HR@10"], -m["weight"]))
    choice = Choice(
        best["window"],
        best["decay"],
        best["recent"],
        best["recent_decay"],
        best["weight"],
        best["HR@10"],
        best["NDCG@10"],
    )
    return choice, measured


def model_scores(scorer: Any, examples: Examples) -> np.ndarray:
    """The artifact's logits over the whole catalogue, [users, N + 1] (column 0 = padding)."""
    num_items = len(scorer.catalog)
    candidates = np.arange(1, num_items + 1, dtype=np.int32)
    out = np.empty((len(examples.targets), num_items + 1), dtype=np.float32)
    out[:, 0] = -np.inf
    for i in range(len(examples.targets)):
        out[i, 1:] = scorer.score(examples.items[i], examples.signals[i], candidates)
    return out


def attach(
    prepared: dict, scorer: Any, measured_out: list[dict[str, Any]] | None = None
) -> tuple[ItemNeighbours | None, dict[str, Any]]:
    """Choose the blend on validation for this scorer; the neighbours to ship (None: no blend helps)
    and the metadata entry recording the choice and the grid (every point into `measured_out`)."""
    started = time.time()
    catalog, valid = prepared["catalog"], prepared["valid"]
    user_sequences = sequences(prepared["splits"], catalog)
    scores = model_scores(scorer, valid)
    choice, measured = choose(scores, valid, user_sequences, len(catalog))
    if measured_out is not None:
        measured_out.extend(measured)
    baseline = next(m for m in measured if m["weight"] == 0.0)
    entry: dict[str, Any] = {
        "chosen_on": "validation split, whole-catalogue ranking, NDCG@10",
        "validation": {
            "model": {"HR@10": baseline["HR@10"], "NDCG@10": baseline["NDCG@10"]},
            "blend": {"HR@10": choice.hr, "NDCG@10": choice.ndcg},
        },
        "grid": {
            "window": list(WINDOWS),
            "decay": [WINDOW_DECAY],
            "recent": list(RECENT),
            "recent_decay": list(RECENT_DECAYS),
            "weight": list(WEIGHTS),
        },
    }
    seconds = round(time.time() - started, 1)  # printed, not stored: a rebuild leaves metadata.json as it was
    print(
        f"  co-occurrence blend on validation: model {baseline['HR@10']:.4f} / {baseline['NDCG@10']:.4f}, "
        f"best {choice.hr:.4f} / {choice.ndcg:.4f} ({choice}) in {seconds} s",
        flush=True,
    )
    if choice.weight == 0.0:
        return None, entry
    neighbours = count_neighbours(user_sequences, len(catalog), choice.window, choice.decay)
    entry.update(
        {
            "file": COOCCURRENCE_FILE,
            "window": choice.window,
            "decay": choice.decay,
            "top_n": TOP_N,
            "pairs": int(neighbours.neighbours.size),
            "serving": choice.serving(),
        }
    )
    return neighbours, entry


def main(argv: list[str] | None = None) -> None:
    from model_build import train as train_module
    from model_build.export import rewrite_with_neighbours
    from rtrec.scorer import Scorer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=train_module.DEFAULT_DATA)
    parser.add_argument("--model-dir", type=Path, default=None, help="default: train's --out default")
    parser.add_argument("--grid-out", type=Path, default=None, help="write every grid point here (JSON)")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or train_module.default_out(args.data)
    prepared = train_module.prepare(args.data)
    scorer = Scorer.load(model_dir)
    measured: list[dict[str, Any]] = []
    neighbours, entry = attach(prepared, scorer, measured)
    version = rewrite_with_neighbours(model_dir, neighbours, entry)
    print(f"{model_dir}: version {version}")
    if args.grid_out:
        args.grid_out.write_text(json.dumps(measured, indent=1) + "\n")


if __name__ == "__main__":
    main()
