"""Trending popularity (rtrec.trending): bucketing, decay, the blended vector, the writer and the follower."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtrec.catalog import CatalogItem
from rtrec.events import Event
from rtrec.features import Catalog
from rtrec.live_catalog import LiveCatalog
from rtrec.recommender import Recommender
from rtrec.settings import IngestSettings, RecommendSettings, SettingsError
from rtrec.stores.catalog import CatalogChange
from rtrec.stores.errors import StoreRejected, StoreUnavailable
from rtrec.trending import (
    LiveTrending,
    TrendingConfig,
    TrendingRecorder,
    bucket_counts,
    decayed_scores,
    popularity_vector,
    trending_weight,
)

HOUR_MS = 3600 * 1000
CONFIG = TrendingConfig(bucket_s=3600, half_life_s=3600, window_buckets=24, shards=4, prior_events=10)
NOW = 1_795_809_600_000  # a bucket boundary (divisible by an hour)


def event(item_id: str, type_: str = "view", ts: int = NOW, value: float | None = None, n: int = 0) -> Event:
    return Event(
        user_id="u", event_id=f"e{n}-{item_id}-{ts}", item_id=item_id, type=type_, ts=ts, value=value
    )


# ---------- weights and buckets ----------


def test_weights_follow_the_fold_per_type_and_a_skip_counts_nothing():
    assert [trending_weight(t) for t in ("view", "click", "add_to_cart", "purchase")] == [1, 2, 3, 5]
    assert trending_weight("skip") == 0.0
    # A rating is an interaction whatever its stars: one star counts as much as five.
    assert (
        trending_weight("rating", 1.0) == trending_weight("rating", 5.0) == trending_weight("rating") == 2.0
    )


def test_bucket_counts_sum_weights_per_bucket_and_item():
    counts = bucket_counts(
        [
            event("a", "view", NOW + 10),
            event("a", "purchase", NOW + 20),
            event("b", "click", NOW - 1),  # the previous hour
            event("c", "skip", NOW + 30),  # counts nothing: left out
        ],
        NOW + 60_000,
        CONFIG,
    )
    bucket = CONFIG.bucket_of(NOW)
    assert counts == {(bucket, "a"): 6.0, (bucket - 1, "b"): 2.0}


def test_an_event_older_than_the_window_is_not_counted_and_a_future_one_counts_now():
    old = event("old", ts=NOW - CONFIG.window_buckets * HOUR_MS - 1)
    ahead = event("ahead", ts=NOW + 3 * HOUR_MS)  # clocks ahead: counted in the current bucket
    counts = bucket_counts([old, ahead], NOW, CONFIG)
    assert counts == {(CONFIG.bucket_of(NOW), "ahead"): 1.0}


def test_the_ttl_outlives_the_window():
    bucket = CONFIG.bucket_of(NOW)
    last_read_s = (bucket + CONFIG.window_buckets) * CONFIG.bucket_s  # when the bucket leaves the window
    assert CONFIG.expires_at(bucket) > last_read_s


event_strategy = st.builds(
    event,
    item_id=st.sampled_from(["a", "b", "c", "d"]),
    type_=st.sampled_from(["view", "click", "add_to_cart", "purchase", "rating", "skip"]),
    ts=st.integers(NOW - 30 * HOUR_MS, NOW + 5 * 60_000),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(event_strategy, max_size=30), st.integers(0, 30))
def test_counting_a_batch_in_parts_adds_up_to_counting_it_whole(events, cut):
    whole = bucket_counts(events, NOW, CONFIG)
    parts: dict[tuple[int, str], float] = {}
    for part in (events[:cut], events[cut:]):
        for key, value in bucket_counts(part, NOW, CONFIG).items():
            parts[key] = parts.get(key, 0.0) + value
    assert parts.keys() == whole.keys()
    assert all(math.isclose(parts[k], whole[k]) for k in whole)
    assert all(value > 0 for value in whole.values())


# ---------- decay ----------


def test_a_bucket_decays_by_its_age_from_the_middle():
    bucket = CONFIG.bucket_of(NOW) - 2
    middle = (bucket + 0.5) * HOUR_MS
    now = int(middle + 3 * HOUR_MS)  # three half-lives after the bucket's middle
    assert decayed_scores({bucket: {"a": 8.0}}, now, CONFIG) == {"a": pytest.approx(1.0)}


def test_the_current_bucket_never_counts_more_than_its_count_and_old_buckets_drop_out():
    current = CONFIG.bucket_of(NOW)
    scores = decayed_scores({current: {"a": 3.0}, current - CONFIG.window_buckets: {"b": 100.0}}, NOW, CONFIG)
    assert scores == {"a": 3.0}


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.integers(-30, 0),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 1e6), max_size=3),
        max_size=10,
    ),
    st.integers(0, 10 * HOUR_MS),
)
def test_scores_are_non_negative_and_decay_together(raw, later_ms):
    """Between two looks every score shrinks by the same factor, so the order of items never changes
    with time alone; a bucket that leaves the window removes its items' share."""
    current = CONFIG.bucket_of(NOW)
    buckets = {current + offset: counts for offset, counts in raw.items()}
    now = NOW + HOUR_MS // 2  # past the current bucket's middle: no age is clamped
    first = decayed_scores(buckets, now, CONFIG)
    assert all(score >= 0 for score in first.values())
    # The window as of the later look, read at both times: the ratio is one factor for every item.
    window = set(CONFIG.window(now + later_ms))
    kept = {b: c for b, c in buckets.items() if b in window}
    before, after = decayed_scores(kept, now, CONFIG), decayed_scores(kept, now + later_ms, CONFIG)
    factor = 2.0 ** (-later_ms / (CONFIG.half_life_s * 1000))
    for item_id, score in before.items():
        assert after.get(item_id, 0.0) == pytest.approx(score * factor, rel=1e-9, abs=1e-12)


# ---------- the vector ----------


def test_with_no_live_counts_the_vector_is_the_prior_scaled_to_its_weight():
    prior = np.array([1.0, 3.0, 0.0], dtype=np.float32)
    values = popularity_vector({}, {"a": 1, "b": 2, "c": 3}.get, 4, prior, prior_events=8)
    assert values.tolist() == [2.0, 6.0, 0.0, 0.0]  # the 4th index is a new item: no prior


def test_live_counts_reach_new_items_and_unknown_ids_are_ignored():
    index = {"a": 1, "b": 2, "new": 3}
    values = popularity_vector(
        {"new": 5.0, "gone": 100.0, "a": 1.0}, lambda i: index.get(i, 0), 3, np.array([1.0, 1.0]), 2
    )
    assert values.tolist() == [2.0, 1.0, 5.0]
    assert int(np.argmax(values)) == 2  # the new item leads on its own counts


def test_a_quiet_hour_keeps_the_prior_order_and_many_events_outweigh_it():
    prior = np.array([10.0, 1.0])
    index = {"a": 1, "b": 2}.get
    quiet = popularity_vector({"b": 0.5}, index, 2, prior, prior_events=50)
    busy = popularity_vector({"b": 500.0}, index, 2, prior, prior_events=50)
    assert quiet[0] > quiet[1] and busy[1] > busy[0]


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "x"]), st.floats(0.0, 1e9), max_size=4),
    st.lists(st.floats(0.0, 1e6), min_size=0, max_size=3),
    st.floats(0.0, 1e6),
)
def test_the_vector_adds_the_prior_weight_and_the_known_items_scores(scores, prior, prior_events):
    index = {"a": 1, "b": 2, "c": 3}
    values = popularity_vector(scores, lambda i: index.get(i, 0), 3, np.array(prior), prior_events)
    assert values.shape == (3,) and (values >= 0).all()
    expected = sum(s for i, s in scores.items() if i in index)
    if prior and sum(prior) > 0:
        expected += prior_events
    assert float(values.sum()) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ---------- the writer (ingest) ----------


class Sink:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.added: list[tuple[int, str, float, int]] = []
        self.fail = fail or {}
        self.lock = threading.Lock()

    def add(self, bucket: int, item_id: str, count: float, expires_at: int) -> None:
        if item_id in self.fail:
            raise self.fail[item_id]
        with self.lock:
            self.added.append((bucket, item_id, count, expires_at))


def test_the_recorder_writes_one_counter_per_bucket_and_item():
    sink = Sink()
    events = [event("a", n=1), event("a", "click", n=2), event("b", "purchase"), event("c", "skip")]
    written = TrendingRecorder(sink, CONFIG, concurrency=4, clock_ms=lambda: NOW).record(events)
    bucket = CONFIG.bucket_of(NOW)
    assert sorted(sink.added) == [
        (bucket, "a", 3.0, CONFIG.expires_at(bucket)),
        (bucket, "b", 5.0, CONFIG.expires_at(bucket)),
    ]
    assert (written.written, written.failed) == (2, 0)


def test_a_refused_counter_is_counted_and_the_others_are_written():
    sink = Sink(fail={"bad": StoreRejected("nope")})
    events = [event("bad"), event("a"), event("b")]
    written = TrendingRecorder(sink, CONFIG, concurrency=1, clock_ms=lambda: NOW).record(events)
    assert (written.written, written.failed) == (2, 1)
    assert written.errors and "nope" in written.errors[0]


def test_an_unavailable_table_stops_the_batch_after_the_first_failure():
    sink = Sink(fail={"a": StoreUnavailable("throttled")})
    events = [event("a"), *[event(f"i{n}") for n in range(5)]]
    written = TrendingRecorder(sink, CONFIG, concurrency=1, clock_ms=lambda: NOW).record(events)
    assert sink.added == [] and (written.written, written.failed) == (0, 6)


def test_no_counter_write_starts_inside_the_deadline_reserve():
    sink = Sink()
    recorder = TrendingRecorder(sink, CONFIG, clock_ms=lambda: NOW)
    written = recorder.record([event("a"), event("b")], remaining_ms=lambda: 1000, reserve_ms=5000)
    assert sink.added == [] and written.failed == 2


def test_the_recorder_never_raises_whatever_the_sink_raises():
    sink = Sink(fail={"a": RuntimeError("a bug")})
    written = TrendingRecorder(sink, CONFIG, concurrency=2, clock_ms=lambda: NOW).record([event("a")])
    assert written.failed == 1


# ---------- the follower (recommend) ----------


class Source:
    def __init__(self) -> None:
        self.counts: dict[int, dict[str, float]] = {}
        self.reads: list[list[int]] = []
        self.error: Exception | None = None

    def read(self, buckets):
        self.reads.append(list(buckets))
        if self.error is not None:
            raise self.error
        return {b: dict(self.counts.get(b, {})) for b in buckets}


def follower(source, clock):
    return LiveTrending(
        source, CONFIG, refresh_s=60, clock_ms=lambda: clock["ms"], monotonic=lambda: clock["ms"] / 1000
    )


def test_the_follower_reads_the_window_once_then_only_the_open_buckets():
    source, clock = Source(), {"ms": NOW + 1000}
    current = CONFIG.bucket_of(NOW)
    source.counts = {current: {"a": 2.0}, current - 5: {"b": 64.0}}
    live = follower(source, clock)
    assert live.maybe_refresh() is True
    assert source.reads[0] == CONFIG.window(clock["ms"])
    assert live.scores["a"] == pytest.approx(2.0) and live.scores["b"] == pytest.approx(
        64 * 2**-4.5, rel=1e-3
    )
    assert live.maybe_refresh() is None  # not due: nothing read
    clock["ms"] += 61_000
    source.counts[current]["c"] = 1.0
    assert live.maybe_refresh() is True
    assert source.reads[1] == [current - 1, current]
    assert "c" in live.scores and "b" in live.scores  # closed buckets are kept, not read again
    assert live.generation == 2


def test_a_failed_read_keeps_the_last_scores():
    source, clock = Source(), {"ms": NOW}
    source.counts = {CONFIG.bucket_of(NOW): {"a": 1.0}}
    live = follower(source, clock)
    live.refresh()
    source.error = StoreUnavailable("timeout")
    clock["ms"] += 61_000
    assert live.maybe_refresh() is False
    assert live.scores == {"a": pytest.approx(1.0)} and live.refresh_failures == 1 and live.generation == 1


# ---------- the recommender's one popularity ----------

CATALOG = Catalog(
    item_ids=["m1", "m2", "m3"], categories=["x", "y"], category_ids=[[0], [1], [0]], popularity=[30, 20, 10]
)


class FixedTrending:
    generation = 1

    def __init__(self, scores):
        self.scores = scores

    def vector(self, prior, size, index_of):
        return popularity_vector(self.scores, index_of, size, prior, prior_events=6)


def test_without_trending_popularity_is_the_artifacts_counts_and_with_it_the_live_vector():
    recommender = Recommender(CATALOG, None)
    assert recommender.popularity().tolist() == [30, 20, 10]
    recommender.trending = FixedTrending({"m3": 100.0})
    assert recommender.popularity().tolist() == pytest.approx([3.0, 2.0, 101.0])


def test_cold_start_and_rank_follow_the_live_popularity():
    recommender = Recommender(CATALOG, None)
    recommender.trending = FixedTrending({"m3": 100.0})
    outcome = recommender.recommend(None, 3, np.random.default_rng(0))
    assert CATALOG.item_at(outcome.picks[0].index) == "m3"
    ranked = recommender.rank(None, ["m1", "m2", "m3"])
    assert [CATALOG.item_at(p.index) for p in ranked.picks] == ["m3", "m1", "m2"]


def test_the_vector_is_rebuilt_when_the_catalog_adds_an_item_or_trending_refreshes():
    changes = []
    live = LiveCatalog(CATALOG, source=type("Feed", (), {"changes_since": lambda self, after: changes})())
    recommender = Recommender(CATALOG, None, live=live)
    trending = FixedTrending({"m1": 1.0, "fresh": 40.0})
    recommender.trending = trending
    first = recommender.popularity()
    assert recommender.popularity() is first and first.shape == (3,)  # cached between refreshes
    changes.append(CatalogChange(CatalogItem("fresh", ("x",)), deleted=False, updated_at=NOW))
    assert live.refresh()
    grown = recommender.popularity()
    assert grown.shape == (4,) and grown[3] == pytest.approx(40.0)  # the new item's own counts
    trending.scores, trending.generation = {"m2": 50.0}, 2
    assert recommender.popularity()[1] > 50 and recommender.popularity()[3] == 0.0


# ---------- settings ----------

BASE = {"USER_STATE_TABLE": "t", "DEAD_LETTER_QUEUE_URL": "https://q", "MODEL_DIR": "/opt/model"}


def test_no_table_means_no_trending_and_the_defaults_agree_between_functions():
    assert IngestSettings.from_env(BASE).trending is None
    env = {**BASE, "TRENDING_TABLE": "trend"}
    ingest, recommend = IngestSettings.from_env(env).trending, RecommendSettings.from_env(env).trending
    assert ingest is not None and recommend is not None and ingest.config == recommend.config
    assert ingest.config.window_buckets * ingest.config.bucket_s >= 4 * ingest.config.half_life_s


@pytest.mark.parametrize(
    "name,value",
    [
        ("TRENDING_BUCKET_S", "10"),
        ("TRENDING_HALF_LIFE_S", "0"),
        ("TRENDING_SHARDS", "0"),
        ("TRENDING_SHARDS", "65"),
        ("TRENDING_REFRESH_S", "0.1"),
        ("TRENDING_PRIOR_EVENTS", "-1"),
        ("TRENDING_WINDOW_BUCKETS", "abc"),
    ],
)
def test_a_trending_setting_out_of_bounds_stops_init(name, value):
    with pytest.raises(SettingsError, match=name):
        RecommendSettings.from_env({**BASE, "TRENDING_TABLE": "trend", name: value})


def test_too_many_partitions_to_read_stops_init():
    env = {**BASE, "TRENDING_TABLE": "t", "TRENDING_WINDOW_BUCKETS": "500", "TRENDING_SHARDS": "64"}
    with pytest.raises(SettingsError, match="TRENDING_WINDOW_BUCKETS"):
        IngestSettings.from_env(env)


def test_a_new_follower_with_the_same_generation_is_not_served_the_old_vector():
    recommender = Recommender(CATALOG, None)
    recommender.trending = FixedTrending({"m3": 100.0})
    assert int(np.argmax(recommender.popularity())) == 2
    recommender.trending = FixedTrending({"m2": 100.0})  # e.g. re-made after a SnapStart restore
    assert int(np.argmax(recommender.popularity())) == 1
