"""Experiments as configuration: variants, a traffic split, a time window, deterministic bucketing.

An experiment is data (read from SSM or AppConfig by the function that serves it): a name, a start
and a stop, and variants with weights and the settings they change (a model version, the exploration
share ...). A user's variant is a hash of the experiment's name and the user id, so every answer of
the experiment gives the same user the same variant, and separate experiments split independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BUCKETS = 10_000
MAX_VARIANTS = 10


class InvalidExperiment(ValueError):
    """An experiment configuration that cannot be served; the message says why."""


@dataclass(frozen=True)
class Variant:
    """One arm: its share of the traffic and the settings it changes."""

    name: str
    weight: float
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """Variants over a time window; outside it nobody is bucketed."""

    name: str
    variants: tuple[Variant, ...]
    start_ms: int = 0
    stop_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms and (self.stop_ms is None or now_ms < self.stop_ms)

    def assign(self, user_id: str, now_ms: int) -> Variant | None:
        """The user's variant while the experiment runs, None outside its window."""
        if not self.active(now_ms):
            return None
        point = bucket(self.name, user_id) / BUCKETS * sum(v.weight for v in self.variants)
        cumulative = 0.0
        for variant in self.variants:
            cumulative += variant.weight
            if point < cumulative:
                return variant
        return self.variants[-1]


def bucket(experiment: str, user_id: str) -> int:
    """A stable bucket in [0, BUCKETS) for a user in an experiment."""
    digest = hashlib.blake2b(f"{experiment}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def parse_experiment(raw: Any) -> Experiment:
    """An experiment from its JSON form.

    ``{"name", "variants": [{"name", "weight", "settings"}, ...], "start_ms"?, "stop_ms"?}``
    """
    if not isinstance(raw, dict):
        raise InvalidExperiment("an experiment is a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise InvalidExperiment("name: 1 to 64 characters")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not 2 <= len(variants_raw) <= MAX_VARIANTS:
        raise InvalidExperiment(f"variants: 2 to {MAX_VARIANTS}")
    variants = tuple(_variant(v) for v in variants_raw)
    if len({v.name for v in variants}) != len(variants):
        raise InvalidExperiment("variant names repeat")
    start, stop = raw.get("start_ms", 0), raw.get("stop_ms")
    if not isinstance(start, int) or (stop is not None and (not isinstance(stop, int) or stop <= start)):
        raise InvalidExperiment("start_ms and stop_ms are epoch milliseconds, stop after start")
    return Experiment(name, variants, start, stop)


def _variant(raw: Any) -> Variant:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidExperiment("a variant is an object with a name")
    weight = raw.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1000:
        raise InvalidExperiment(f"variant {raw['name']}: weight is a positive number")
    settings = raw.get("settings", {})
    if not isinstance(settings, dict):
        raise InvalidExperiment(f"variant {raw['name']}: settings is an object")
    return Variant(raw["name"], float(weight), dict(settings))


def split(experiment: Experiment, user_ids: Sequence[str], now_ms: int) -> dict[str, list[str]]:
    """Users per variant (for simulations and reports)."""
    groups: dict[str, list[str]] = {v.name: [] for v in experiment.variants}
    for user_id in user_ids:
        variant = experiment.assign(user_id, now_ms)
        if variant is not None:
            groups[variant.name].append(user_id)
    return groups
