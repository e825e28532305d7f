"""Live item popularity from the stream: decayed per-item counts ("trending").

The model artifact carries the training split's interaction counts, frozen at training time. This
module keeps popularity live instead:

- ingest adds, per batch, the weights of the events the fold actually applied, into time buckets
  (``bucket_counts``; the store keeps one counter per bucket and item, ``rtrec.stores.trending``);
- the recommend function reads the last buckets every few seconds (``LiveTrending``), decays each
  bucket by its age (``decayed_scores``) and turns the scores into a popularity vector over the live
  catalog's index space, with the artifact's static popularity as a prior (``popularity_vector``),
  so a new item gets its own counts and a quiet hour falls back to the prior instead of an empty list.

Weights are the fold's per event type (``rtrec.state.EVENT_WEIGHTS``: view 1, click 2, add_to_cart 3,
purchase 5), with one difference: a rating counts as an interaction whatever its stars (the fold's
weight of a rating without a value, 2). Popularity predicts what users will interact with next, and a
1-star rating is still an interaction; counting ratings by their stars (as interests do) lost a fifth
of the hit rate on ML-100k (docs/ARCHITECTURE.md, "Trending popularity"). A **skip counts nothing**:
a negative count would let skips (an impression scrolled past, the commonest event on a busy shelf)
push an item below items nobody saw, and a bucket's sum would stop being a count that is safe to
decay and blend; the fold's interests treat skips the same way.

Pure: no boto3 and no clock of its own (callers pass ``now_ms``; ``LiveTrending`` takes clocks).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rtrec.events import Event
from rtrec.state import event_weight
from rtrec.stores.errors import StoreUnavailable

log = logging.getLogger(__name__)

# Decayed contributions below this are dropped: a bucket many half-lives old says nothing next to
# today's, and dropping them keeps the scores small.
SCORE_FLOOR = 1e-9


@dataclass(frozen=True)
class TrendingConfig:
    """How counts are bucketed, decayed and blended; the writer and the readers must agree on it."""

    bucket_s: int = 3600
    half_life_s: float = 6 * 3600
    # Buckets read (the newest first): older ones are not read and their counts expire.
    window_buckets: int = 24
    # Partitions per bucket: one bucket's writes spread over this many partition keys.
    shards: int = 4
    # The artifact's popularity enters as this many decayed events, spread by its shares: with few
    # live events it decides the order, with many it is a tie-breaker.
    prior_events: float = 50.0

    def __post_init__(self) -> None:
        if self.bucket_s < 1 or self.half_life_s <= 0 or self.window_buckets < 1 or self.shards < 1:
            raise ValueError("bucket_s, half_life_s, window_buckets and shards must be positive")
        if not math.isfinite(self.prior_events) or self.prior_events < 0:
            raise ValueError("prior_events must be a finite number >= 0")

    def bucket_of(self, ts_ms: int) -> int:
        """The bucket number of an epoch-millisecond time (buckets start at the epoch)."""
        return int(ts_ms) // (self.bucket_s * 1000)

    def window(self, now_ms: int) -> list[int]:
        """The buckets a reader looks at, oldest first: the current one and the ones before it."""
        current = self.bucket_of(now_ms)
        return list(range(current - self.window_buckets + 1, current + 1))

    def expires_at(self, bucket: int) -> int:
        """Epoch seconds after which nobody reads ``bucket`` (the store's TTL), plus one bucket of slack."""
        return (bucket + self.window_buckets + 1) * self.bucket_s


def trending_weight(event_type: str, value: float | None = None) -> float:
    """What one applied event adds to its item's count: the fold's type weight; any rating 2; skip 0."""
    if event_type == "rating":
        return event_weight("rating", None)  # an interaction, whatever its stars
    return max(0.0, event_weight(event_type, value))


def bucket_counts(
    events: Iterable[Event],
    now_ms: int,
    config: TrendingConfig,
    weight: Callable[[str, float | None], float] = trending_weight,
) -> dict[tuple[int, str], float]:
    """Summed weights per (bucket, item) of ``events``, by each event's own time.

    An event older than the readers' window adds nothing (a backfill of old history must not look like
    a trend); one ahead of ``now_ms`` (client clocks, up to the accepted skew) counts in the current bucket.
    Items whose weights sum to zero are left out.
    """
    first = config.window(now_ms)[0]
    current = config.bucket_of(now_ms)
    counts: dict[tuple[int, str], float] = {}
    for event in events:
        added = weight(event.type, event.value)
        bucket = min(config.bucket_of(event.ts), current)
        if not added > 0.0 or bucket < first:
            continue
        key = (bucket, event.item_id)
        counts[key] = counts.get(key, 0.0) + added
    return counts


def decayed_scores(
    buckets: Mapping[int, Mapping[str, float]], now_ms: int, config: TrendingConfig
) -> dict[str, float]:
    """Per item: Σ over the window's buckets of count × 2^(−age / half-life), age from the bucket's middle.

    The current bucket's middle may lie ahead of ``now_ms``; its age is then 0 (counts never grow).
    Buckets outside the window and non-positive counts are ignored.
    """
    window = set(config.window(now_ms))
    half_life_ms = config.half_life_s * 1000.0
    scores: dict[str, float] = {}
    for bucket, counts in buckets.items():
        if bucket not in window:
            continue
        middle_ms = (bucket + 0.5) * config.bucket_s * 1000.0
        factor = math.pow(2.0, -max(0.0, now_ms - middle_ms) / half_life_ms)
        if factor < SCORE_FLOOR:
            continue
        for item_id, count in counts.items():
            if count > 0 and math.isfinite(count):
                scores[item_id] = scores.get(item_id, 0.0) + count * factor
    return scores


def popularity_vector(
    scores: Mapping[str, float],
    index_of: Callable[[str], int],
    size: int,
    prior: NDArray[Any] | None,
    prior_events: float,
) -> NDArray[np.float64]:
    """Live popularity over an index space of ``size`` items (position i − 1 is index i).

    ``prior`` (the artifact's popularity, over its first items; a new item has none) is scaled to sum
    to ``prior_events`` and added to the decayed scores of the items ``index_of`` knows (0 = unknown).
    """
    values = np.zeros(size, dtype=np.float64)
    if prior is not None and prior.size and prior_events > 0:
        base = np.clip(np.asarray(prior[:size], dtype=np.float64), 0.0, None)
        total = float(base.sum())
        if total > 0:
            values[: base.size] = (base / total) * prior_events  # shares first: a tiny total cannot overflow
    for item_id, score in scores.items():
        index = index_of(item_id)
        if 1 <= index <= size:
            values[index - 1] += score
    return values


# ---------- ingest: adding a batch's counts ----------


class TrendingSink(Protocol):
    """What ingest needs of the trending store (``rtrec.stores.trending.TrendingTable``)."""

    def add(self, bucket: int, item_id: str, count: float, expires_at: int) -> None: ...


@dataclass
class TrendingWrite:
    """What one batch's trending update did: counters written, failed and not attempted."""

    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class TrendingRecorder:
    """Adds the applied events of a batch to the trending counters; never raises.

    Trending is best effort: the user states are what ingest must get right, so a failure here is
    reported (logs, a metric) and the batch goes on. After the first ``StoreUnavailable`` the rest of
    the batch's counters are not attempted (the table is throttled or down: more calls only add time).
    """

    def __init__(
        self,
        sink: TrendingSink,
        config: TrendingConfig,
        concurrency: int = 8,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.sink = sink
        self.config = config
        self.concurrency = max(1, concurrency)
        self.clock_ms = clock_ms

    def record(
        self,
        events: Sequence[Event],
        remaining_ms: Callable[[], int] | None = None,
        reserve_ms: int = 0,
    ) -> TrendingWrite:
        """Add ``events`` (applied once each: no duplicates, no redeliveries) to their buckets.

        No new write starts once ``remaining_ms()`` is below ``reserve_ms`` (the invocation's deadline).
        """
        outcome = TrendingWrite()
        counts = bucket_counts(events, self.clock_ms(), self.config)
        if not counts:
            return outcome
        stop = _Stop()

        def add(entry: tuple[tuple[int, str], float]) -> bool | None:
            (bucket, item_id), count = entry
            if stop.is_set or (remaining_ms is not None and remaining_ms() < reserve_ms):
                return None
            try:
                self.sink.add(bucket, item_id, count, self.config.expires_at(bucket))
                return True
            except Exception as error:  # best effort: any failure is counted, none propagates
                if isinstance(error, StoreUnavailable):
                    stop.is_set = True
                if len(outcome.errors) < 3:
                    outcome.errors.append(f"{type(error).__name__}: {error}")
                return False

        entries = list(counts.items())
        workers = min(self.concurrency, len(entries))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(add, entries))
        else:
            results = [add(entry) for entry in entries]
        outcome.written = sum(1 for r in results if r is True)
        outcome.failed = len(results) - outcome.written
        return outcome


class _Stop:
    is_set = False


# ---------- recommend: following the counters ----------


class TrendingSource(Protocol):
    """What the recommend function needs of the trending store: item counts per bucket."""

    def read(self, buckets: Sequence[int]) -> dict[int, dict[str, float]]: ...


class LiveTrending:
    """Decayed item scores from the trending table, refreshed at most every ``refresh_s`` seconds.

    Closed buckets are read once and kept; the newest ``reread_buckets`` (still being written, also by
    late events) are read again on every refresh. A failed read keeps the last scores.
    """

    def __init__(
        self,
        source: TrendingSource,
        config: TrendingConfig,
        refresh_s: float = 60.0,
        reread_buckets: int = 2,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.config = config
        self.refresh_s = refresh_s
        self.reread_buckets = max(1, reread_buckets)
        self.clock_ms = clock_ms
        self.monotonic = monotonic
        self.scores: dict[str, float] = {}
        # +1 on every successful refresh: what a cached popularity vector is keyed on.
        self.generation = 0
        self.refresh_failures = 0
        self._buckets: dict[int, dict[str, float]] = {}
        self._last_look: float | None = None

    def maybe_refresh(self) -> bool | None:
        """Refresh if the last look is older than ``refresh_s``: None = not due, else whether it worked."""
        now = self.monotonic()
        if self._last_look is not None and now - self._last_look < self.refresh_s:
            return None
        self._last_look = now
        return self.refresh()

    def refresh(self) -> bool:
        """Read the buckets not held yet and the open ones; on failure keep the last scores."""
        now_ms = self.clock_ms()
        window = self.config.window(now_ms)
        open_from = window[-1] - self.reread_buckets + 1
        wanted = [b for b in window if b >= open_from or b not in self._buckets]
        try:
            read = self.source.read(wanted)
        except Exception as error:  # the table being unreachable must not fail an answer
            self.refresh_failures += 1
            log.warning("trending refresh failed: %s: %s", type(error).__name__, error)
            return False
        kept = {b: counts for b, counts in self._buckets.items() if b >= window[0]}
        for bucket in wanted:
            kept[bucket] = dict(read.get(bucket, {}))
        self._buckets = kept
        self.scores = decayed_scores(kept, now_ms, self.config)
        self.generation += 1
        return True

    def vector(
        self,
        prior: NDArray[Any] | None,
        size: int,
        index_of: Callable[[str], int],
    ) -> NDArray[np.float64]:
        """The live popularity over ``size`` items (``popularity_vector`` with this config's prior weight)."""
        return popularity_vector(self.scores, index_of, size, prior, self.config.prior_events)


class PopularityCache:
    """One popularity vector per (trending generation, index space): rebuilt only when either changes."""

    def __init__(self) -> None:
        self._key: Hashable = None
        self._value: NDArray[Any] | None = None

    def get(self, key: Hashable, build: Callable[[], NDArray[Any]]) -> NDArray[Any]:
        if self._value is None or key != self._key:
            self._value, self._key = build(), key
        return self._value


__all__ = [
    "LiveTrending",
    "PopularityCache",
    "TrendingConfig",
    "TrendingRecorder",
    "TrendingSink",
    "TrendingSource",
    "TrendingWrite",
    "bucket_counts",
    "decayed_scores",
    "popularity_vector",
    "trending_weight",
]
