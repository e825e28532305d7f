"""The recommendation service: user state + model + ranking rules -> what the API answers.

Sits between the HTTP handler (parsing, auth, metrics) and the pieces it joins: the
TFLite `Scorer`, the `Catalog` and the pure rules in `rtrec.ranking`. It never raises
for a model problem: when the model cannot load or a call fails, it answers from
popularity and marks the outcome degraded, so the API keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rtrec import ranking
from rtrec.catalog import ItemFilter
from rtrec.features import PAD_INDEX, Catalog, HistoryStep, encode_history
from rtrec.ranking import Pick, RankingRules
from rtrec.rotation import Demotion, log_multipliers
from rtrec.state import item_key
from rtrec.trending import PopularityCache

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from rtrec.live_catalog import LiveCatalog

SOURCE_MODEL = "model"
SOURCE_COLD_START = "cold_start"
SOURCE_POPULAR = "popular"
SOURCE_STATE = "state"


class ScorerLike(Protocol):
    """The part of `rtrec.scorer.Scorer` the service uses (see CONTRACTS)."""

    version: str
    catalog: Catalog

    def interests(self, items: NDArray[Any], signals: NDArray[Any]) -> NDArray[np.float32]: ...

    def score(
        self, items: NDArray[Any], signals: NDArray[Any], candidates: NDArray[Any]
    ) -> NDArray[np.float32]: ...

    def retrieve(
        self,
        items: NDArray[Any],
        signals: NDArray[Any],
        top_m: int,
        exclude: NDArray[Any] | None = None,
        new_items: int = 0,
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]: ...


class PopularitySource(Protocol):
    """Live item popularity (``rtrec.trending.LiveTrending``): a vector over an index space."""

    generation: int  # changes whenever the vector would

    def vector(
        self, prior: NDArray[Any] | None, size: int, index_of: Callable[[str], int]
    ) -> NDArray[np.float64]: ...


class StateLike(Protocol):
    """The part of `rtrec.state.UserState` the service reads."""

    seen: NDArray[np.uint32]  # item_key of every item the user interacted with
    interests: dict[str, Any]

    def history(self) -> list[HistoryStep]: ...


@dataclass(frozen=True)
class RecommenderConfig:
    """Service settings (the Lambda takes them from ``rtrec.settings.RecommendSettings``)."""

    retrieval_size: int = 128  # the model's shortlist width: one fixed-shape ranking call
    exploration_share: float = 0.1
    # Share of answers that explore at all: an exploration slot costs the answer's quality, so it is
    # spent on some requests (drawn per answer from its recommendation id), not one slot in every list.
    exploration_rate: float = 1.0
    # Share of answers whose exploration slots go to new items (added after training) when there are any.
    new_item_rate: float = 1.0
    genre_cap_share: float = 0.5
    # Promotions: this share of the slots goes to items matching promotion_filter (newest first).
    promotion_share: float = 0.0
    promotion_filter: ItemFilter = field(default_factory=ItemFilter)
    # Popular items only, no model: an experiment's control arm (rtrec.experiments), not a degradation.
    popular_only: bool = False


@dataclass(frozen=True)
class NewItems:
    """The live catalog's items the model never saw, as serving needs them; rebuilt per catalog change."""

    generation: int
    vectors: NDArray[np.float32]  # [E, D], rows in index order (index = model size + 1 + row)
    keys: NDArray[np.uint32]  # item_key per row, to drop the ones the user has seen
    category_ids: Sequence[Sequence[int]]  # per index 1.. (the model's items, then these), for the cap


@dataclass(frozen=True)
class ExplorationPlan:
    """How one answer's exploration slots are filled (drawn per answer in ``_organic``)."""

    new_items: Collection[int]  # indices of the new items among the candidates
    random_exploration: bool  # this answer explores at random (the EXPLORATION_RATE share)
    new_item_slots: bool  # this answer's exploration slots go to new items first
    category_ids: Sequence[Sequence[int]]  # per index, the model's items then the new items


@dataclass
class Outcome:
    """What a service call produced, with enough detail for the response, logs and metrics."""

    picks: list[Pick] = field(default_factory=list)
    source: str = SOURCE_MODEL
    degraded: bool = False
    failure: str | None = None
    candidates_scored: int = 0
    unknown_item_ids: list[str] = field(default_factory=list)
    interests: dict[str, float] = field(default_factory=dict)


class Recommender:
    """One per container: holds the loaded scorer (or why it is missing) and the catalog."""

    def __init__(
        self,
        catalog: Catalog | None,
        scorer: ScorerLike | None,
        config: RecommenderConfig | None = None,
        load_error: str | None = None,
        live: LiveCatalog | None = None,
    ) -> None:
        self.catalog = catalog
        self.scorer = scorer
        self.config = config or RecommenderConfig()
        self.load_error = load_error
        self.live = live
        self._new_items: NewItems | None = None
        # Live popularity from the stream (rtrec.trending); None = the artifact's training-split counts.
        self.trending: PopularitySource | None = None
        self._popularity = PopularityCache()
        if catalog is not None:
            # Category names per catalog index (0 = padding), built once: every answer lists them.
            names = catalog.categories
            self.item_genres: list[list[str]] = [[]] + [
                [names[c] for c in ids] for ids in catalog.category_ids
            ]
            self._genre_matrix = catalog.category_matrix()
            self._genre_mask = self._genre_matrix.astype(bool)
            self._genre_prior = _normalise(catalog.popularity @ self._genre_matrix[1:], len(names))
            # The seen set holds item keys, not model indices, so it survives a new model version.
            self._item_keys = np.concatenate(
                [np.zeros(1, dtype="<u4"), np.fromiter((item_key(i) for i in catalog.item_ids), dtype="<u4")]
            )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, config: RecommenderConfig | None = None) -> Recommender:
        """Load the scorer from the artifact; on any failure keep the catalog alone (degraded mode)."""
        try:
            from rtrec.scorer import Scorer

            scorer = Scorer.load(model_dir)
            return cls(scorer.catalog, scorer, config)
        except Exception as error:  # the API must keep answering whatever broke in the artifact
            load_error = f"model failed to load: {type(error).__name__}: {error}"
        try:
            catalog = Catalog.load(model_dir)
        except Exception as error:
            catalog = None
            load_error += f"; catalog failed to load: {type(error).__name__}: {error}"
        return cls(catalog, None, config, load_error)

    def popularity(self) -> NDArray[np.float32]:
        """Item popularity over the serving index space (position i - 1 is index i; new items after
        the model's): the live trending vector with the artifact's counts as its prior, or those counts.

        The one popularity every popular answer uses: cold start, the fallback, ``rank``'s order.
        """
        assert self.catalog is not None
        catalog, live, trending = self.catalog, self.live, self.trending
        size = len(live) if live is not None else len(catalog)
        index_of = live.index_of if live is not None else catalog.index_of
        if trending is None:
            key: Any = ("static", size, live.generation if live is not None else None)
            return self._popularity.get(key, lambda: _padded(catalog.popularity, size))
        # The follower itself is in the key (compared by identity): a new one (after a SnapStart
        # restore) starts its generations again.
        key = (trending, trending.generation, size, live.generation if live is not None else None)
        return self._popularity.get(
            key, lambda: trending.vector(catalog.popularity, size, index_of).astype(np.float32)
        )

    @property
    def model_version(self) -> str | None:
        return self.scorer.version if self.scorer is not None else None

    def recommend(
        self,
        state: StateLike | None,
        k: int,
        rng: np.random.Generator,
        filter_genres: Iterable[str] = (),
        exclude_item_ids: Iterable[str] = (),
        item_filter: ItemFilter | None = None,
        *,
        demotion: Demotion | None = None,
    ) -> Outcome:
        """Top-k items for a user: available, unseen, filtered, diversified, explored and promoted.

        ``demotion`` (rotation, ``rtrec.rotation``) multiplies recently shown items' scores.
        """
        outcome = self._organic(state, k, rng, filter_genres, exclude_item_ids, item_filter, demotion)
        if self.live is not None and self.config.promotion_share > 0 and self.catalog is not None:
            slots = int(k * self.config.promotion_share)
            if slots:
                outcome.picks = ranking.promote(
                    outcome.picks, self._promotable(state, exclude_item_ids, item_filter)[:slots], k
                )
        return outcome

    def _promotable(
        self, state: StateLike | None, exclude_item_ids: Iterable[str], item_filter: ItemFilter | None
    ) -> list[int]:
        """Indices matching the promotion filter (and the request's), unseen, newest first."""
        assert self.live is not None
        live = self.live
        mask = live.mask(self.config.promotion_filter) & live.mask(item_filter)
        for item_id in [*exclude_item_ids, *_ids(state.history() if state is not None else [])]:
            mask[live.index_of(item_id)] = False
        mask[0] = False
        candidates = np.flatnonzero(mask).astype(np.int64)
        if state is not None and len(state.seen) and candidates.size:
            keys = np.fromiter((item_key(live.item_at(int(i))) for i in candidates), dtype="<u4")
            candidates = candidates[~np.isin(keys, state.seen)]
        return [int(i) for i in live.newest_first(candidates)]

    def item_id_at(self, index: int) -> str:
        """The item id of an answer's index (a model item, or a live catalog's new item)."""
        if self.live is not None:
            return self.live.item_at(index)
        assert self.catalog is not None
        return self.catalog.item_at(index)

    def categories_at(self, index: int) -> list[str]:
        """The categories of an answer's index, as the live catalog knows them now."""
        if self.live is not None:
            return self.live.categories_at(index)
        return self.item_genres[index]

    def _organic(
        self,
        state: StateLike | None,
        k: int,
        rng: np.random.Generator,
        filter_genres: Iterable[str],
        exclude_item_ids: Iterable[str],
        item_filter: ItemFilter | None,
        demotion: Demotion | None = None,
    ) -> Outcome:
        if self.catalog is None:
            return Outcome(source=SOURCE_POPULAR, degraded=True, failure=self.load_error)
        catalog = self.catalog
        vocabulary = catalog.category_index
        genre_ids = frozenset(vocabulary[g] for g in filter_genres if g in vocabulary)
        # Random exploration on a share of answers; new items take the exploration slots on theirs (all
        # answers by default): a new item the model never saw learns nothing until someone is shown it.
        random_exploration = rng.random() < self.config.exploration_rate
        new_item_slots = self.config.new_item_rate >= 1.0 or rng.random() < self.config.new_item_rate
        rules = RankingRules(
            k=k,
            genre_cap_share=self.config.genre_cap_share,
            exploration_share=self.config.exploration_share,
            filter_genres=genre_ids,
        )
        history = state.history() if state is not None else []
        blocked_ids = [*exclude_item_ids, *_ids(history)]
        mask = ranking.allowed_mask(
            len(catalog), (catalog.index_of(i) for i in blocked_ids), self._genre_mask, genre_ids
        )
        if state is not None and len(state.seen):
            mask &= ~np.isin(self._item_keys, state.seen)
        # Rotation: a multiplier per catalog index, < 1 for items shown recently (rtrec.rotation).
        weights = demotion.multipliers(self._item_keys) if demotion is not None and len(demotion) else None
        if self.live is not None:  # availability now, and the request's category and attribute filters
            mask &= self.live.mask(item_filter)[: len(catalog) + 1]
        items, signals = encode_history(history, catalog)
        new = self._current_new_items() if items.any() else None
        if new is not None:  # the items the model never saw join retrieval under the same rules
            fresh_mask = self._new_item_mask(new, state, blocked_ids, filter_genres, item_filter)
            mask = np.concatenate([mask, fresh_mask])
            if weights is not None and demotion is not None:  # new items rotate like the model's
                weights = np.concatenate([weights, demotion.multipliers(new.keys)])

        if state is None or not items.any():
            source = SOURCE_POPULAR if state is None else SOURCE_COLD_START
            degraded = self.scorer is None
            return Outcome(
                self._popular(mask, rules, source, state, weights), source, degraded, self._failure(degraded)
            )
        if self.config.popular_only:
            return Outcome(
                self._popular(mask, rules, ranking.REASON_POPULAR, weights=weights), SOURCE_POPULAR
            )
        if self.scorer is None:
            return Outcome(
                self._popular(mask, rules, ranking.REASON_POPULAR, weights=weights),
                SOURCE_POPULAR,
                True,
                self.load_error,
            )

        fresh = int(mask[len(catalog) + 1 :].sum())
        # One new-item candidate per exploration slot, plus one per new item rotation pushes down (so a
        # shown new item can give way to the next one).
        rotated = 0 if weights is None else int((weights[len(catalog) + 1 :] < 1.0).sum())
        wanted = rules.exploration_slots + rotated if fresh else 0
        try:
            indices, scores = self._retrieve(items, signals, mask, k, wanted)
        except Exception as error:
            return Outcome(
                self._popular(mask, rules, ranking.REASON_POPULAR, weights=weights),
                SOURCE_POPULAR,
                True,
                f"model call failed: {type(error).__name__}: {error}",
            )
        plan = ExplorationPlan(
            new_items=range(len(catalog) + 1, len(mask)) if fresh else (),
            random_exploration=random_exploration,
            new_item_slots=new_item_slots,
            category_ids=catalog.category_ids if new is None else new.category_ids,
        )
        picks = self._model_picks(indices, scores, mask, rules, rng, weights, plan)
        return Outcome(picks, SOURCE_MODEL, candidates_scored=int(indices.size))

    def _model_picks(
        self,
        indices: NDArray[np.int64],
        scores: NDArray[np.float32],
        mask: NDArray[np.bool_],
        rules: RankingRules,
        rng: np.random.Generator,
        weights: NDArray[np.float64] | None,
        plan: ExplorationPlan,
    ) -> list[Pick]:
        """The ranking rules over the retrieved candidates (rotation's ``weights`` applied), topped up."""
        assert self.catalog is not None
        keep = mask[indices]  # the contract promises this already; the rules must hold regardless
        kept_scores, kept_weights = scores[keep], None
        if weights is not None:  # logits: a multiplier on the item's probability adds its log
            kept_weights = weights[indices[keep]]
            kept_scores = (kept_scores + log_multipliers(kept_weights)).astype(np.float32)
        picks = ranking.rank_candidates(
            indices[keep],
            kept_scores,
            plan.category_ids,
            rules,
            rng,
            new_items=plan.new_items,
            random_exploration=plan.random_exploration,
            new_item_slots=plan.new_item_slots,
            item_weights=kept_weights,
        )
        if len(picks) < rules.k:
            remaining = mask.copy()
            remaining[[p.index for p in picks]] = False
            fallback = self._popular(remaining, rules, ranking.REASON_POPULAR, weights=weights)
            picks = ranking.top_up(picks, fallback, rules.k)
        return picks

    def _retrieve(
        self, items: NDArray[Any], signals: NDArray[Any], mask: NDArray[np.bool_], k: int, new_items: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The scorer's candidates among the allowed indices of ``mask``; raises on a broken contract."""
        assert self.scorer is not None
        excluded = (np.flatnonzero(~mask[1:]) + 1).astype(np.int64)
        top_m = max(self.config.retrieval_size, k)
        extra = {"new_items": new_items} if new_items else {}  # a scorer without new items needs no argument
        indices, scores = self.scorer.retrieve(items, signals, top_m, excluded, **extra)
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if indices.shape != scores.shape or not ((indices >= 1) & (indices < len(mask))).all():
            raise ValueError("retrieve returned malformed candidates")
        return indices, scores

    def _current_new_items(self) -> NewItems | None:
        """The live catalog's new items with their vectors, recomputed once per catalog change.

        The scorer receives the vectors at the same time, so one retrieve call scores them with the
        model's items. None when there is nothing to add (no live catalog, or the scorer has no vectors).
        """
        live, scorer = self.live, self.scorer
        if live is None or scorer is None or not hasattr(scorer, "item_vectors"):
            return None
        cached = self._new_items
        if cached is None or cached.generation != live.generation:
            model_vectors = getattr(scorer, "item_vectors")  # noqa: B009 (optional in ScorerLike)
            vectors = live.new_item_vectors(model_vectors, self.catalog.popularity if self.catalog else None)
            cached = NewItems(
                live.generation,
                vectors,
                np.fromiter((item_key(live.item_at(int(i))) for i in live.new_indices()), dtype="<u4"),
                [*self.catalog.category_ids, *live.new_category_ids()] if self.catalog else [],
            )
            if hasattr(scorer, "set_extra_items"):
                scorer.set_extra_items(vectors)
            self._new_items = cached
        return cached if len(cached.vectors) and hasattr(scorer, "set_extra_items") else None

    def _new_item_mask(
        self,
        new: NewItems,
        state: StateLike | None,
        blocked_ids: Sequence[str],
        filter_genres: Iterable[str],
        item_filter: ItemFilter | None,
    ) -> NDArray[np.bool_]:
        """Over the new items: available, passing the request's filters, not blocked, not seen."""
        assert self.live is not None and self.catalog is not None
        live, size = self.live, len(self.catalog)
        mask = live.mask(item_filter)
        genres = frozenset(filter_genres)
        if genres:
            mask &= live.mask(ItemFilter(categories=genres))
        mask = mask[size + 1 :].copy()
        for item_id in blocked_ids:
            index = live.index_of(item_id)
            if index > size:
                mask[index - size - 1] = False
        if state is not None and len(state.seen):
            mask &= ~np.isin(new.keys, state.seen)
        return mask

    def similar(self, item_id: str, k: int, item_filter: ItemFilter | None = None) -> Outcome | None:
        """Items like ``item_id`` by cosine of the model's item vectors; None when the item is unknown.

        An item the model never saw (added to the catalog since) gets the mean vector of the model's
        items that share a category with it and is matched on its categories first, so it has
        neighbours from the first minute.
        """
        if self.catalog is None:
            return Outcome(source=SOURCE_POPULAR, degraded=True, failure=self.load_error)
        index = self.live.index_of(item_id) if self.live is not None else self.catalog.index_of(item_id)
        if index == PAD_INDEX:
            return None
        size = len(self.live) if self.live is not None else len(self.catalog)
        mask = self.live.mask(item_filter) if self.live is not None else np.ones(size + 1, dtype=bool)
        mask[[PAD_INDEX, index]] = False
        if self.scorer is None or not hasattr(self.scorer, "item_vectors"):
            popularity = np.concatenate([[0.0], self.popularity()[:size]])
            order = [
                int(i) for i in np.argsort(-np.where(mask, popularity, -np.inf), kind="stable")[:k] if mask[i]
            ]
            picks = [Pick(i, float(popularity[i]), ranking.REASON_POPULAR) for i in order]
            return Outcome(picks, SOURCE_POPULAR, degraded=True, failure=self.load_error)
        vectors = self._all_item_vectors(size)
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        scores = (vectors @ vectors[index]) / (norms * norms[index])
        if self.live is not None and index > len(self.catalog):
            # A new item's vector is only its categories' centroid: items that share its categories
            # come first (by the share of its categories they carry), the vectors order them.
            scores = scores + self.live.category_overlap(index)
        scores[~mask] = -np.inf
        count = min(k, int(mask.sum()))
        top = np.argpartition(-scores, count - 1)[:count] if count else np.zeros(0, dtype=np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        picks = [Pick(int(i), float(scores[i]), ranking.REASON_SIMILAR) for i in top]
        return Outcome(picks, SOURCE_MODEL, candidates_scored=int(mask.sum()))

    def _all_item_vectors(self, size: int) -> NDArray[np.float32]:
        """Model item vectors, then the metadata vector of every live new item (as retrieval scores them)."""
        assert self.scorer is not None and self.catalog is not None
        model_vectors: NDArray[np.float32] = np.asarray(
            getattr(self.scorer, "item_vectors"),  # noqa: B009 (optional in ScorerLike: checked by the caller)
            dtype=np.float32,
        )
        new = self._current_new_items()
        if new is None or size == len(self.catalog):
            return model_vectors
        return np.concatenate([model_vectors, new.vectors])

    def rank(self, state: StateLike | None, item_ids: Sequence[str]) -> Outcome:
        """Order the caller's own candidates for this user; unknown ids are reported, not fatal."""
        if self.catalog is None:
            return Outcome(
                source=SOURCE_POPULAR,
                degraded=True,
                failure=self.load_error,
                unknown_item_ids=list(dict.fromkeys(item_ids)),
            )
        catalog = self.catalog
        known: list[int] = []
        unknown: list[str] = []
        for item_id in dict.fromkeys(item_ids):
            index = catalog.index_of(item_id)
            (known.append(index) if index != PAD_INDEX else unknown.append(item_id))
        candidates = np.asarray(known, dtype=np.int64)
        items, signals = encode_history(state.history() if state is not None else [], catalog)

        source, failure = SOURCE_MODEL, None
        if state is None or not items.any():
            source = SOURCE_POPULAR if state is None else SOURCE_COLD_START
        elif self.scorer is None:
            source, failure = SOURCE_POPULAR, self.load_error
        elif candidates.size:
            try:
                scores = np.asarray(self.scorer.score(items, signals, candidates), dtype=np.float32)
                order = np.argsort(-scores, kind="stable")
                picks = [Pick(int(candidates[i]), float(scores[i]), ranking.REASON_MODEL) for i in order]
                return Outcome(
                    picks, SOURCE_MODEL, candidates_scored=int(candidates.size), unknown_item_ids=unknown
                )
            except Exception as error:
                source, failure = SOURCE_POPULAR, f"model call failed: {type(error).__name__}: {error}"

        if source == SOURCE_MODEL:  # no known candidates: nothing to score
            return Outcome([], SOURCE_MODEL, unknown_item_ids=unknown)
        if failure is None and self.scorer is None:
            failure = self.load_error
        popularity = self.popularity()[candidates - 1] if candidates.size else np.zeros(0)
        top = float(popularity.max()) if popularity.size and popularity.max() > 0 else 1.0
        order = np.argsort(-popularity, kind="stable")
        reason = ranking.REASON_COLD_START if source == SOURCE_COLD_START else ranking.REASON_POPULAR
        picks = [Pick(int(candidates[i]), float(popularity[i] / top), reason) for i in order]
        return Outcome(picks, source, failure is not None, failure, unknown_item_ids=unknown)

    def interests(self, state: StateLike | None) -> Outcome:
        """The user's predicted interest distribution over the model's categories (sums to 1)."""
        if self.catalog is None:
            return Outcome(source=SOURCE_POPULAR, degraded=True, failure=self.load_error, interests={})
        names = self.catalog.categories
        items, signals = encode_history(state.history() if state is not None else [], self.catalog)
        failure = None
        if self.scorer is None:
            failure = self.load_error
        elif items.any():
            try:
                scores = np.asarray(self.scorer.interests(items, signals), dtype=np.float64)
                if scores.shape != (len(names),):
                    raise ValueError("the interest head does not match the catalog's categories")
                return Outcome(source=SOURCE_MODEL, interests=_by_name(names, _normalise(scores, len(names))))
            except Exception as error:
                failure = f"model call failed: {type(error).__name__}: {error}"
        degraded = failure is not None
        state_weights = _state_interests(state, self.catalog)
        if state_weights is not None:
            return Outcome(
                source=SOURCE_STATE,
                degraded=degraded,
                failure=failure,
                interests=_by_name(names, state_weights),
            )
        return Outcome(
            source=SOURCE_POPULAR,
            degraded=degraded,
            failure=failure,
            interests=_by_name(names, self._genre_prior),
        )

    def _popular(
        self,
        mask: NDArray[np.bool_],
        rules: RankingRules,
        reason: str,
        state: StateLike | None = None,
        weights: NDArray[np.float64] | None = None,
    ) -> list[Pick]:
        assert self.catalog is not None
        return ranking.popular(
            self.popularity()[: len(self.catalog)],
            mask[: len(self.catalog) + 1],  # the model's items (the cap rule knows their categories)
            self.catalog.category_ids,
            rules,
            reason=reason,
            genre_weights=_state_interests(state, self.catalog),
            genre_matrix=self._genre_matrix,
            item_weights=None if weights is None else weights[: len(self.catalog) + 1],
        )

    def _failure(self, degraded: bool) -> str | None:
        return self.load_error if degraded else None


def _padded(popularity: NDArray[Any], size: int) -> NDArray[np.float32]:
    """The artifact's counts over ``size`` items (items after the model's have none)."""
    values = np.zeros(size, dtype=np.float32)
    count = min(size, len(popularity))
    values[:count] = popularity[:count]
    return values


def _ids(history: Iterable[HistoryStep]) -> list[str]:
    return [step.item_id for step in history]


def _normalise(values: NDArray[Any], size: int) -> NDArray[Any]:
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    total = float(values.sum())
    if total <= 0.0:
        return np.full(size, 1.0 / max(1, size))
    return values / total


def _by_name(names: Sequence[str], distribution: NDArray[Any]) -> dict[str, float]:
    return {name: round(float(p), 6) for name, p in zip(names, distribution, strict=True)}


def _state_interests(state: StateLike | None, catalog: Catalog) -> NDArray[Any] | None:
    """The state's decayed category scores as a distribution over the catalog's vocabulary.

    All scores share one decay factor, so no re-decay; categories the model does not know are left out.
    """
    if state is None or not state.interests:
        return None
    index = catalog.category_index
    weights = np.zeros(len(catalog.categories), dtype=np.float64)
    for name, score in state.interests.items():
        if name in index:
            weights[index[name]] = max(0.0, float(score))
    if weights.sum() <= 0.0:
        return None
    distribution: NDArray[np.float64] = weights / weights.sum()
    return distribution
