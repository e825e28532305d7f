"""Experiments: configuration, deterministic bucketing, the window; and the read-out's statistics."""

from __future__ import annotations

import pytest

from evaluation.ab_simulation import ArmResult, two_proportion_p_value, wilson_interval
from rtrec.experiments import InvalidExperiment, parse_experiment, split

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
