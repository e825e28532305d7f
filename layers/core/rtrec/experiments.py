"""Experiments as configuration: variants, a traffic split, a time window, deterministic bucketing.

An experiment is data (an SSM parameter the recommend function reads through Powertools Parameters
with a short max age, `ExperimentWatcher`): a name, a start and a stop, and variants with weights and
the rule settings they change (`RULE_SETTINGS`: the exploration share, the genre cap, popularity
only ...). A user's variant is a hash of the experiment's name and the user id, so every answer of
the experiment gives the same user the same variant, and separate experiments split independently.
A configuration that does not validate never replaces the last good one (the watcher reports it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtrec.recommender import RecommenderConfig
    from rtrec.settings import ExperimentSettings

BUCKETS = 10_000
MAX_VARIANTS = 10
# What a variant may change, with the bounds the function's own settings have (rtrec.settings): a
# variant is a set of RecommenderConfig fields for the requests of its users.
RULE_SETTINGS: dict[str, tuple[float, float]] = {
    "exploration_share": (0.0, 0.5),
    "exploration_rate": (0.0, 1.0),
    "genre_cap_share": (0.05, 1.0),
    "promotion_share": (0.0, 0.5),
}
FLAG_SETTINGS = frozenset({"popular_only"})  # popularity only, no model: the usual control arm
# The parameter's value when no experiment runs (an SSM String cannot be empty).
NO_EXPERIMENT = frozenset({"", "none", "off", "null"})


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
    return Variant(raw["name"], float(weight), _settings(raw["name"], settings))


def _settings(variant: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The variant's rule settings, each known and within its bounds."""
    checked: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "model_version":
            # One model per container (the registry's pointer): a second one per variant is not held.
            raise InvalidExperiment(f"variant {variant}: model_version variants are not served")
        if key in FLAG_SETTINGS:
            if not isinstance(value, bool):
                raise InvalidExperiment(f"variant {variant}: {key} is true or false")
            checked[key] = value
        elif key in RULE_SETTINGS:
            low, high = RULE_SETTINGS[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidExperiment(f"variant {variant}: {key} is a number from {low:g} to {high:g}")
            checked[key] = float(value)
        else:
            known = ", ".join(sorted([*RULE_SETTINGS, *FLAG_SETTINGS]))
            raise InvalidExperiment(f"variant {variant}: unknown setting {key!r} (known: {known})")
    return checked


def parse_config(text: str | None) -> Experiment | None:
    """The experiment a parameter's text describes; None when it says none runs (``none``, empty)."""
    if text is None or text.strip().lower() in NO_EXPERIMENT:
        return None
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise InvalidExperiment(f"not JSON: {error}") from None
    return None if raw is None else parse_experiment(raw)


def configured(config: RecommenderConfig, variant: Variant | None) -> RecommenderConfig:
    """``config`` with the variant's rule settings in place of the function's own."""
    if variant is None or not variant.settings:
        return config
    return dataclasses.replace(config, **variant.settings)


@dataclass(frozen=True)
class Assignment:
    """The experiment and variant one answer was served under."""

    experiment: str
    variant: Variant


class ExperimentWatcher:
    """The running experiment, read at most once per ``check_every_s`` (one float comparison otherwise).

    ``read`` returns the parameter's text (Powertools caches it for the same max age). A read that
    fails or a text that does not validate keeps the last good experiment and is reported through
    ``on_failure(kind, message)`` (kind ``read`` or ``invalid``; an invalid text once, not every look).
    """

    def __init__(
        self,
        read: Callable[[], str | None],
        check_every_s: float,
        on_failure: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.check_every_s = check_every_s
        self.on_failure = on_failure
        self.clock = clock
        self.experiment: Experiment | None = None
        self._text: str | None = None
        self._next_check: float | None = None

    def current(self) -> Experiment | None:
        now = self.clock()
        if self._next_check is not None and now < self._next_check:
            return self.experiment
        self._next_check = now + self.check_every_s
        try:
            text = self.read()
        except Exception as error:
            self.on_failure("read", f"experiment parameter unreadable: {type(error).__name__}: {error}")
            return self.experiment
        if text == self._text:
            return self.experiment
        self._text = text
        try:
            self.experiment = parse_config(text)
        except InvalidExperiment as error:
            kept = self.experiment.name if self.experiment else "none"
            self.on_failure("invalid", f"experiment configuration refused ({error}); keeping {kept}")
        return self.experiment

    def assign(self, user_id: str, now_ms: int) -> Assignment | None:
        """The caller's experiment and variant now, None when no experiment runs for them."""
        experiment = self.current()
        variant = experiment.assign(user_id, now_ms) if experiment is not None else None
        return Assignment(experiment.name, variant) if experiment is not None and variant else None


def watch_experiments(
    settings: ExperimentSettings, on_failure: Callable[[str, str], None]
) -> ExperimentWatcher:
    """A watcher on the experiment parameter through Powertools Parameters, its client made at first look."""
    from rtrec.registry import Lazy, cached_pointer
    from rtrec.stores.clients import aws_client

    def ssm_provider() -> Any:
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        return SSMProvider(boto3_client=aws_client("ssm", settings.ssm))

    provider = Lazy(ssm_provider)
    # cached_pointer: the parameter through the provider's cache; a missing parameter reads as None.
    read = cached_pointer(lambda *a, **k: provider().get(*a, **k), settings.parameter, settings.max_age_s)
    return ExperimentWatcher(read, settings.max_age_s, on_failure)


def split(experiment: Experiment, user_ids: Sequence[str], now_ms: int) -> dict[str, list[str]]:
    """Users per variant (for simulations and reports)."""
    groups: dict[str, list[str]] = {v.name: [] for v in experiment.variants}
    for user_id in user_ids:
        variant = experiment.assign(user_id, now_ms)
        if variant is not None:
            groups[variant.name].append(user_id)
    return groups
