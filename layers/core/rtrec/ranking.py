"""Ranking rules applied after the model: pure functions over numpy arrays, no I/O.

The model orders the retrieved candidates; these rules decide what the caller sees:
items the user already interacted with (or asked to exclude) never appear, an optional
genre filter restricts the catalog, a per-genre cap keeps the list diverse, and a share
of the slots goes to exploration items the model is unsure of. Every pick carries the
reason it is there, so clients and offline analysis can tell model picks from fallbacks.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

REASON_MODEL = "model"
REASON_EXPLORE = "explore"
REASON_POPULAR = "popular"
REASON_COLD_START = "cold_start"
REASON_PROMOTED = "promoted"
REASON_SIMILAR = "similar"
REASON_NEW_ITEM = "new_item"  # an exploration slot given to an item added after the model was trained
REASONS: tuple[str, ...] = (
    REASON_MODEL,
    REASON_EXPLORE,
    REASON_POPULAR,
    REASON_COLD_START,
    REASON_PROMOTED,
    REASON_SIMILAR,
    REASON_NEW_ITEM,
)

# A popular item outside every genre the user showed interest in keeps this share of its weight.
_OFF_INTEREST_WEIGHT = 0.25


@dataclass(frozen=True)
class Pick:
    """One recommended item: its catalog index, its score and why it was chosen."""

    index: int
    score: float
    reason: str


@dataclass(frozen=True)
class RankingRules:
    """What the caller asked for and the service's diversity settings.

    `genre_cap_share` bounds the share of the list any single genre may fill (genres the
    caller filtered on are exempt, since every item carries them); `exploration_share`
    is the share of slots given to exploration items (rounded down, so small lists have none).
    """

    k: int
    genre_cap_share: float = 0.5
    exploration_share: float = 0.1
    filter_genres: frozenset[int] = frozenset()

    @property
    def per_genre_cap(self) -> int:
        return max(1, math.ceil(self.k * self.genre_cap_share))

    @property
    def exploration_slots(self) -> int:
        return min(self.k - 1, int(self.k * self.exploration_share)) if self.k > 1 else 0


def allowed_mask(
    num_items: int,
    blocked: Iterable[int] = (),
    genre_matrix: NDArray[np.float32] | None = None,
    filter_genres: Collection[int] = (),
) -> NDArray[np.bool_]:
    """Boolean mask over catalog indices 0..num_items: True where an item may be recommended.

    Index 0 (padding) and every blocked index are False; with a genre filter, only items
    carrying at least one of the genres stay True. `genre_matrix` is the catalog's
    multi-hot (num_items + 1, number of categories) matrix.
    """
    mask = np.ones(num_items + 1, dtype=bool)
    mask[0] = False
    if filter_genres:
        if genre_matrix is None:
            raise ValueError("a genre filter needs the catalog's genre matrix")
        mask &= genre_matrix[:, sorted(filter_genres)].any(axis=1)
    blocked_array = np.fromiter(blocked, dtype=np.int64)
    blocked_array = blocked_array[(blocked_array > 0) & (blocked_array <= num_items)]
    mask[blocked_array] = False
    return mask


def diversify(
    ranked: Sequence[int],
    genre_ids: Sequence[Sequence[int]],
    count: int,
    cap: int,
    exempt_genres: Collection[int] = (),
) -> list[int]:
    """Positions (into `ranked`) of up to `count` items, best first, with no genre over `cap`.

    An item counts against every genre it carries. When the cap leaves fewer than `count`
    items, the best of the skipped ones fill the rest: a short list would serve nobody.
    `genre_ids[i]` holds the genres of catalog index i + 1.
    """
    chosen: list[int] = []
    skipped: list[int] = []
    per_genre: dict[int, int] = {}
    for position, index in enumerate(ranked):
        if len(chosen) == count:
            break
        genres = [g for g in genre_ids[index - 1] if g not in exempt_genres]
        if all(per_genre.get(g, 0) < cap for g in genres):
            chosen.append(position)
            for g in genres:
                per_genre[g] = per_genre.get(g, 0) + 1
        else:
            skipped.append(position)
    if len(chosen) < count:
        chosen.extend(skipped[: count - len(chosen)])
        chosen.sort()
    return chosen


def uncertainty(scores: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """How unsure the model is about each candidate, in [0, 1]: 1 at the pool's median score.

    Uses only the score order within the pool, so it holds for any score scale.
    """
    if scores.size == 0:
        return scores.astype(np.float64)
    distance: NDArray[np.float64] = np.abs(scores.astype(np.float64) - float(np.median(scores)))
    spread = float(distance.max())
    if spread == 0.0:
        return np.ones_like(distance)
    return 1.0 - distance / spread


def rank_candidates(
    indices: NDArray[Any],
    scores: NDArray[Any],
    genre_ids: Sequence[Sequence[int]],
    rules: RankingRules,
    rng: np.random.Generator,
    new_items: Collection[int] = (),
    random_exploration: bool = True,
    new_item_slots: bool = True,
    item_weights: NDArray[np.float64] | None = None,
) -> list[Pick]:
    """Turn model-scored candidates into the final list: diversified top plus exploration.

    `indices`/`scores` are the retrieved candidates (already free of blocked items). The
    exploitation part is the best-scored items under the genre cap; the exploration slots
    go first to the `new_items` among the other candidates (best score first, reason
    `new_item`: items the model never saw learn nothing unless shown; not when `new_item_slots` is
    False), and the rest, only when `random_exploration`, are drawn weighted by `uncertainty`.
    They are placed at evenly spaced positions so the first item is always the model's best.
    `item_weights` (one per candidate, e.g. rotation's multipliers) also scale the exploration draw:
    a demoted item's score lands mid-pool, where uncertainty alone would favour it.

    New items take exploitation slots only when the other candidates run out: their scores come
    from a stand-in vector, not calibrated against the model's own items (scored with them, they
    took 15 % of the slots for 1.4 % of the ratings: evaluation/new_items.py).
    """
    fresh_flags = np.isin(indices, np.fromiter(new_items, dtype=np.int64)) if len(new_items) else None
    order = (
        np.argsort(-scores, kind="stable")
        if fresh_flags is None
        else np.lexsort((-np.asarray(scores, dtype=np.float64), fresh_flags))
    )
    ranked = indices[order]
    ranked_scores = scores[order]
    explore_slots = min(rules.exploration_slots, max(0, len(ranked) - rules.k))
    fresh = None if fresh_flags is None else fresh_flags[order]
    explorable = fresh if new_item_slots else None
    if not random_exploration:  # only new items the full exploitation list leaves out may take slots
        outside = 0
        if explorable is not None and explore_slots:
            full = diversify(ranked.tolist(), genre_ids, rules.k, rules.per_genre_cap, rules.filter_genres)
            outside = int(explorable.sum()) - int(explorable[full].sum())
        explore_slots = min(explore_slots, outside)
    exploit_count = rules.k - explore_slots
    exploit_positions = diversify(
        ranked.tolist(), genre_ids, exploit_count, rules.per_genre_cap, rules.filter_genres
    )
    picks = [Pick(int(ranked[p]), float(ranked_scores[p]), REASON_MODEL) for p in exploit_positions]
    if explore_slots == 0:
        return picks

    taken = np.zeros(len(ranked), dtype=bool)
    taken[exploit_positions] = True
    pool = np.flatnonzero(~taken)
    first = pool[explorable[pool]][:explore_slots] if explorable is not None else pool[:0]
    explore = [Pick(int(ranked[p]), float(ranked_scores[p]), REASON_NEW_ITEM) for p in first]
    pool = pool[~np.isin(pool, first)]
    slots = explore_slots - len(first) if random_exploration else 0
    if slots and pool.size:
        weights = uncertainty(ranked_scores[pool]) + 1e-6
        if item_weights is not None:
            weights = weights * item_weights[order][pool]
        drawn = rng.choice(pool, size=min(slots, len(pool)), replace=False, p=weights / weights.sum())
        explore += [Pick(int(ranked[p]), float(ranked_scores[p]), REASON_EXPLORE) for p in sorted(drawn)]
    gap = len(picks) // (len(explore) + 1) + 1
    for slot, pick in enumerate(explore, start=1):
        picks.insert(min(slot * gap, len(picks)), pick)
    return picks


def popular(
    popularity: NDArray[np.float32],
    mask: NDArray[np.bool_],
    genre_ids: Sequence[Sequence[int]],
    rules: RankingRules,
    reason: str = REASON_POPULAR,
    genre_weights: NDArray[np.floating[Any]] | None = None,
    genre_matrix: NDArray[np.float32] | None = None,
    item_weights: NDArray[np.float64] | None = None,
) -> list[Pick]:
    """The most popular allowed items, diversified like model picks; score = popularity / max.

    `item_weights` (one per catalog index, e.g. rotation's multipliers) scale items' values after
    the maximum is taken, so a demoted item's score says how much it was demoted.

    With `genre_weights` (a distribution over the categories, e.g. a user's decayed interests) and the
    catalog's `genre_matrix`, popularity is boosted toward the user's genres, which is how a
    user whose items the model does not know still gets a personal answer.
    `popularity[i]` belongs to catalog index i + 1.
    """
    values = np.zeros(mask.shape[0], dtype=np.float64)
    values[1:] = popularity
    if genre_weights is not None and genre_matrix is not None and float(genre_weights.sum()) > 0:
        affinity = genre_matrix @ (genre_weights / genre_weights.sum())
        values *= _OFF_INTEREST_WEIGHT + affinity
    top = float(values.max()) or 1.0
    if item_weights is not None:
        values *= item_weights
    candidates = np.flatnonzero(mask)
    if candidates.size == 0:
        return []
    # Diversification looks at a bounded prefix: enough to satisfy any cap at k <= 100.
    prefix = min(candidates.size, max(rules.k * 10, 200))
    if prefix < candidates.size:
        best = np.argpartition(-values[candidates], prefix - 1)[:prefix]
        candidates = candidates[best]
    ranked = candidates[np.argsort(-values[candidates], kind="stable")]
    positions = diversify(ranked.tolist(), genre_ids, rules.k, rules.per_genre_cap, rules.filter_genres)
    return [Pick(int(ranked[p]), float(values[ranked[p]] / top), reason) for p in positions]


def top_up(picks: list[Pick], fallback: Iterable[Pick], k: int) -> list[Pick]:
    """Fill a short list with fallback picks it does not already hold, up to k items."""
    present = {p.index for p in picks}
    out = list(picks)
    for pick in fallback:
        if len(out) >= k:
            break
        if pick.index not in present:
            out.append(pick)
            present.add(pick.index)
    return out


def promote(picks: list[Pick], promoted: Sequence[int], k: int) -> list[Pick]:
    """Place ``promoted`` indices (best first) into a list of ``k``, at evenly spaced positions.

    The first slot stays the best organic pick; promoted items replace the list's tail, so the
    organic order is kept. Promoted picks carry the reason ``promoted`` and a score of 0.
    """
    chosen = [i for i in dict.fromkeys(promoted) if i not in {p.index for p in picks}][: max(0, k - 1)]
    if not chosen:
        return picks[:k]
    organic = picks[: k - len(chosen)]
    total = len(organic) + len(chosen)
    step = total / len(chosen)
    positions = {min(total - 1, max(1, round(step * (n + 1)) - 1)) for n in range(len(chosen))}
    while len(positions) < len(chosen):  # rounding collided: take the last free positions
        positions.add(max(set(range(1, total)) - positions))
    result: list[Pick] = []
    organic_iter, promoted_iter = iter(organic), iter(chosen)
    for position in range(total):
        if position in positions:
            result.append(Pick(int(next(promoted_iter)), 0.0, REASON_PROMOTED))
        else:
            result.append(next(organic_iter))
    return result
