"""Experiments: configuration, deterministic bucketing, the window; and the read-out's statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.ab_simulation import ArmResult, two_proportion_p_value, wilson_interval
from rtrec.events import Event
from rtrec.experiments import (
    ExperimentWatcher,
    InvalidExperiment,
    configured,
    parse_config,
    parse_experiment,
    split,
)
from rtrec.recommender import Recommender, RecommenderConfig
from rtrec.state import fold
from tests.conftest import MODEL_DIR

CONFIG = {
    "name": "exploration-2026-12",
    "variants": [
        {"name": "control", "weight": 3, "settings": {}},
        {"name": "explore", "weight": 1, "settings": {"exploration_share": 0.2}},
    ],
    "start_ms": 1_000,
    "stop_ms": 2_000,
}


def test_a_user_stays_in_one_variant_and_the_split_follows_the_weights():
    experiment = parse_experiment(CONFIG)
    users = [f"user-{n}" for n in range(20_000)]
    groups = split(experiment, users, 1_500)
    assert len(groups["control"]) / len(users) == pytest.approx(0.75, abs=0.015)
    assert all(experiment.assign(u, 1_500).name == "control" for u in groups["control"][:500])
    assert experiment.assign("user-1", 1_500) == experiment.assign("user-1", 1_999)
    other = parse_experiment({**CONFIG, "name": "another"})
    moved = sum(experiment.assign(u, 1_500).name != other.assign(u, 1_500).name for u in users[:2000])
    assert moved > 300  # experiments split independently


def test_nobody_is_bucketed_outside_the_window():
    experiment = parse_experiment(CONFIG)
    assert experiment.assign("u", 999) is None and experiment.assign("u", 2_000) is None


@pytest.mark.parametrize(
    "config",
    [
        [],
        {**CONFIG, "name": ""},
        {**CONFIG, "variants": CONFIG["variants"][:1]},
        {**CONFIG, "variants": [{"name": "a"}, {"name": "a"}]},
        {**CONFIG, "variants": [{"name": "a", "weight": 0}, {"name": "b"}]},
        {**CONFIG, "stop_ms": 500},
    ],
)
def test_invalid_experiments_are_refused(config):
    with pytest.raises(InvalidExperiment):
        parse_experiment(config)


def test_the_read_out_statistics():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert two_proportion_p_value(ArmResult(1000, 200), ArmResult(1000, 200)) == pytest.approx(1.0)
    assert two_proportion_p_value(ArmResult(1000, 250), ArmResult(1000, 200)) < 0.01


# ---------- configuration served from a parameter ----------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"exploration_share": 0.9}, "exploration_share"),
        ({"exploration_share": True}, "exploration_share"),
        ({"genre_cap_share": 0.0}, "genre_cap_share"),
        ({"popular_only": "yes"}, "popular_only"),
        ({"retrieval_size": 10}, "unknown setting"),
        ({"model_version": "v2"}, "not served"),
    ],
)
def test_variant_settings_are_known_and_bounded(settings, message):
    config = {"name": "x", "variants": [{"name": "a"}, {"name": "b", "settings": settings}]}
    with pytest.raises(InvalidExperiment, match=message):
        parse_experiment(config)


def test_the_parameter_text_names_an_experiment_or_none():
    assert parse_config(None) is None and parse_config(" none ") is None and parse_config("") is None
    assert parse_config("null") is None
    assert parse_config(json.dumps(CONFIG)).name == "exploration-2026-12"
    with pytest.raises(InvalidExperiment, match="not JSON"):
        parse_config("{name: x}")


def test_a_variant_overrides_the_recommender_config_for_its_users_only():
    experiment = parse_experiment(CONFIG)
    base = RecommenderConfig(exploration_share=0.1, genre_cap_share=0.5)
    explore = next(v for v in experiment.variants if v.name == "explore")
    control = next(v for v in experiment.variants if v.name == "control")
    assert configured(base, explore) == RecommenderConfig(exploration_share=0.2, genre_cap_share=0.5)
    assert configured(base, control) is base and configured(base, None) is base


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_reads_once_per_max_age_and_keeps_the_last_good_experiment():
    clock, failures, reads = Clock(), [], []
    values = iter(
        [json.dumps(CONFIG), "{broken", json.dumps({**CONFIG, "variants": []}), OSError("down"), "none"]
    )

    def read():
        reads.append(clock.now)
        value = next(values)
        if isinstance(value, Exception):
            raise value
        return value

    watcher = ExperimentWatcher(read, 30, lambda kind, message: failures.append((kind, message)), clock)
    assert watcher.current().name == "exploration-2026-12"
    clock.now = 29.9
    assert watcher.assign("user-1", 1_500).experiment == "exploration-2026-12"  # no read before the max age
    assert watcher.assign("user-1", 5_000) is None  # after the experiment's stop
    assert reads == [0.0]
    for step, kind in ((30, "invalid"), (60, "invalid"), (90, "read")):
        clock.now = step
        assert watcher.current().name == "exploration-2026-12"  # the last good one keeps running
        assert failures[-1][0] == kind
    assert "keeping exploration-2026-12" in failures[0][1]
    clock.now = 120
    assert watcher.current() is None  # "none": the experiment is over
    assert len(failures) == 3 and len(reads) == 5


@pytest.mark.skipif(not (MODEL_DIR / "model.tflite").exists(), reason="no model artifact")
def test_a_popular_only_variant_answers_popular_items_without_being_degraded():
    model = Recommender.from_model_dir(MODEL_DIR, RecommenderConfig(exploration_share=0.0))
    popular = Recommender(
        model.catalog, model.scorer, RecommenderConfig(exploration_share=0.0, popular_only=True)
    )
    user_items = model.catalog.item_ids[:8]
    events = [
        Event("u", f"e{n}", item, "rating", 1_700_000_000_000 + n, 5.0) for n, item in enumerate(user_items)
    ]
    state = fold(None, "u", events, model.catalog, 1_700_000_100_000).state
    personal = model.recommend(state, 10, np.random.default_rng(0))
    shown = popular.recommend(state, 10, np.random.default_rng(0))
    assert personal.source == "model" and shown.source == "popular" and not shown.degraded
    assert {p.reason for p in shown.picks} == {"popular"} and len(shown.picks) == 10
    assert not {popular.item_id_at(p.index) for p in shown.picks} & set(user_items)  # seen items stay out


def test_the_experiment_parameter_setting_is_optional_and_its_max_age_bounded():
    from rtrec.settings import RecommendSettings, SettingsError

    base = {"USER_STATE_TABLE": "t", "MODEL_DIR": "/opt/model"}
    assert RecommendSettings.from_env(base).experiments is None
    configured_ = RecommendSettings.from_env({**base, "EXPERIMENT_PARAMETER": "/s/experiment"}).experiments
    assert configured_ is not None and (configured_.parameter, configured_.max_age_s) == ("/s/experiment", 30)
    with pytest.raises(SettingsError, match="EXPERIMENT_MAX_AGE_S"):
        RecommendSettings.from_env({**base, "EXPERIMENT_PARAMETER": "/s/e", "EXPERIMENT_MAX_AGE_S": "0"})
