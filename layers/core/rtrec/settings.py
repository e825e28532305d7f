"""One settings object per function, read once from the environment at init: typed and bounded.

A value outside its bounds, or one that does not parse, stops the function at init with a
``SettingsError`` naming the variable: a misconfigured stack fails its first invocation loudly
instead of serving with a silently clamped or crashing setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rtrec.catalog import InvalidFilter, ItemFilter, parse_filter
from rtrec.limits import RateLimit
from rtrec.stores.clients import ClientTimeouts
from rtrec.trending import TrendingConfig

DAY_S = 24 * 3600


class SettingsError(ValueError):
    """A configuration variable is missing, malformed or out of bounds; the message names it."""


class _Reader:
    def __init__(self, environ: Mapping[str, str] | None) -> None:
        self.environ = os.environ if environ is None else environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self.environ.get(name, default)
        if value is None or not value.strip():
            raise SettingsError(f"{name} is required")
        return value.strip()

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.environ.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={raw!r} must be between {low:g} and {high:g}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.number(name, default, low, high)
        if value != int(value):
            raise SettingsError(f"{name}={self.environ.get(name)!r} must be a whole number")
        return int(value)

    def item_filter(self, name: str) -> ItemFilter:
        """A filter expression (``rtrec.catalog``); ``category=a|b`` selects categories."""
        raw = self.environ.get(name, "")
        try:
            predicates = parse_filter(raw)
        except InvalidFilter as error:
            raise SettingsError(f"{name}={raw[:80]!r}: {error}") from None
        categories = frozenset(
            v for p in predicates if p.name == "category" and p.operator == "=" for v in p.values
        )
        return ItemFilter(categories, tuple(p for p in predicates if p.name != "category"))

    def timeouts(
        self,
        service: str,
        *,
        connect_s: float,
        read_s: float,
        attempts: int,
        limit_s: float,
        max_attempts: int,
    ) -> ClientTimeouts:
        """``<SERVICE>_CONNECT_TIMEOUT_S``, ``_READ_TIMEOUT_S`` and ``_MAX_ATTEMPTS``, each bounded."""
        return ClientTimeouts(
            connect_s=self.number(f"{service}_CONNECT_TIMEOUT_S", connect_s, 0.05, limit_s),
            read_s=self.number(f"{service}_READ_TIMEOUT_S", read_s, 0.05, limit_s),
            max_attempts=self.integer(f"{service}_MAX_ATTEMPTS", attempts, 1, max_attempts),
        )

    def origins(self, name: str) -> tuple[str, ...]:
        """Comma-separated browser origins; a ``*`` entry is dropped (it would let any site read answers)."""
        raw = self.environ.get(name, "")
        return tuple(o.strip() for o in raw.split(",") if o.strip() and o.strip() != "*")


@dataclass(frozen=True)
class ModelRegistrySettings:
    """Where model versions live (S3) and which one is live (an SSM parameter); see rtrec.registry.

    ``MODEL_BUCKET`` and ``MODEL_POINTER`` both empty: no registry, the layer's model only (tests and
    the local stack by default); one without the other is a configuration error.
    """

    bucket: str
    pointer: str
    # How stale the pointer may be: Powertools caches it this long, and it is looked at no more often.
    pointer_max_age_s: int
    cache_dir: str
    # On the request path once per max age: short, one attempt (the next look is the retry).
    ssm: ClientTimeouts
    # A download happens once per new version.
    s3: ClientTimeouts

    @classmethod
    def from_env(cls, env: _Reader) -> ModelRegistrySettings | None:
        bucket = (env.environ.get("MODEL_BUCKET") or "").strip()
        pointer = (env.environ.get("MODEL_POINTER") or "").strip()
        if not bucket and not pointer:
            return None
        if not bucket or not pointer:
            missing = "MODEL_BUCKET" if not bucket else "MODEL_POINTER"
            raise SettingsError(f"{missing} is required when the other of MODEL_BUCKET/MODEL_POINTER is set")
        return cls(
            bucket=bucket,
            pointer=pointer,
            pointer_max_age_s=env.integer("MODEL_POINTER_MAX_AGE_S", 60, 1, 3600),
            cache_dir=(env.environ.get("MODEL_CACHE_DIR") or "").strip() or "/tmp/models",
            ssm=env.timeouts("SSM", connect_s=0.5, read_s=1.0, attempts=1, limit_s=5, max_attempts=3),
            s3=env.timeouts("MODEL_S3", connect_s=1.0, read_s=3.0, attempts=2, limit_s=10, max_attempts=5),
        )


@dataclass(frozen=True)
class ExperimentSettings:
    """The running experiment's SSM parameter (rtrec.experiments); ``EXPERIMENT_PARAMETER`` empty = none."""

    parameter: str
    # How stale the experiment may be: Powertools caches the parameter this long, looked at no more often.
    max_age_s: int
    ssm: ClientTimeouts

    @classmethod
    def from_env(cls, env: _Reader) -> ExperimentSettings | None:
        parameter = (env.environ.get("EXPERIMENT_PARAMETER") or "").strip()
        if not parameter:
            return None
        return cls(
            parameter=parameter,
            max_age_s=env.integer("EXPERIMENT_MAX_AGE_S", 30, 1, 3600),
            ssm=env.timeouts("SSM", connect_s=0.5, read_s=1.0, attempts=1, limit_s=5, max_attempts=3),
        )


@dataclass(frozen=True)
class TrendingSettings:
    """Live item popularity (rtrec.trending): the table and how counts are bucketed, decayed, read.

    ``TRENDING_TABLE`` empty = off (the artifact's static popularity only). Ingest and recommend must
    read the same bucket width, window and shard count: the template sets them once for both.
    """

    table_name: str
    config: TrendingConfig
    # Recommend only: how often a container reads the open buckets again.
    refresh_s: float

    @classmethod
    def from_env(cls, env: _Reader) -> TrendingSettings | None:
        table_name = (env.environ.get("TRENDING_TABLE") or "").strip()
        if not table_name:
            return None
        config = TrendingConfig(
            bucket_s=env.integer("TRENDING_BUCKET_S", DAY_S, 60, 7 * DAY_S),
            half_life_s=env.number("TRENDING_HALF_LIFE_S", 7 * DAY_S, 60, 365 * DAY_S),
            # Every bucket of the window costs one Query per shard at a container's first refresh.
            window_buckets=env.integer("TRENDING_WINDOW_BUCKETS", 28, 1, 500),
            shards=env.integer("TRENDING_SHARDS", 4, 1, 64),
            prior_events=env.number("TRENDING_PRIOR_EVENTS", 50, 0, 1e9),
        )
        if config.window_buckets * config.shards > 2000:
            raise SettingsError(
                "TRENDING_WINDOW_BUCKETS x TRENDING_SHARDS must be at most 2000 (one Query each per refresh)"
            )
        return cls(
            table_name=table_name,
            config=config,
            refresh_s=env.number("TRENDING_REFRESH_S", 60, 1, 3600),
        )


@dataclass(frozen=True)
class CollectSettings:
    """POST /v1/events: where events go and how long a write may take."""

    stream_name: str
    allowed_origins: tuple[str, ...]
    kinesis: ClientTimeouts
    per_user_events: RateLimit

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CollectSettings:
        env = _Reader(environ)
        return cls(
            stream_name=env.text("EVENT_STREAM_NAME"),
            allowed_origins=env.origins("ALLOWED_ORIGINS"),
            # The function has 10 s; two attempts of at most 2 s leave room to answer 503 in time.
            kinesis=env.timeouts("KINESIS", connect_s=0.5, read_s=1.5, attempts=2, limit_s=5, max_attempts=5),
            # One user at 10 events/s uses a hundredth of a shard's 1,000 records/s.
            per_user_events=RateLimit(
                rate=env.number("PER_USER_EVENT_RATE", 10, 0, 1000),
                burst=env.number("PER_USER_EVENT_BURST", 200, 1, 10_000),
            ),
        )


@dataclass(frozen=True)
class IngestSettings:
    """Kinesis -> user state: the table, the dead-letter queue, the fold's horizons, the time budget."""

    table_name: str
    dead_letter_queue_url: str
    function_name: str
    model_dir: str | None
    # The model registry (rtrec.registry): the items.json of the version the pointer names; None = layer only.
    registry: ModelRegistrySettings | None
    ttl_seconds: int
    dedupe_horizon_ms: int
    write_concurrency: int
    max_write_attempts: int
    # Stop starting new writes when less than this remains, so failures are reported before the timeout.
    deadline_reserve_ms: int
    dynamodb: ClientTimeouts
    sqs: ClientTimeouts
    # Live item popularity: the applied events' counts; None = off.
    trending: TrendingSettings | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IngestSettings:
        env = _Reader(environ)
        model_dir = (env.environ.get("MODEL_DIR") or "").strip() or None
        return cls(
            table_name=env.text("USER_STATE_TABLE"),
            dead_letter_queue_url=env.text("DEAD_LETTER_QUEUE_URL"),
            function_name=env.text("AWS_LAMBDA_FUNCTION_NAME", "ingest"),
            model_dir=model_dir,
            registry=ModelRegistrySettings.from_env(env),
            ttl_seconds=env.integer("USER_STATE_TTL_DAYS", 180, 1, 3650) * DAY_S,
            dedupe_horizon_ms=env.integer("DEDUPE_HORIZON_HOURS", 24, 1, 24 * 14) * 3600 * 1000,
            write_concurrency=env.integer("WRITE_CONCURRENCY", 8, 1, 64),
            max_write_attempts=env.integer("MAX_WRITE_ATTEMPTS", 5, 1, 20),
            deadline_reserve_ms=env.integer("DEADLINE_RESERVE_MS", 5000, 500, 60_000),
            dynamodb=env.timeouts(
                "DYNAMODB", connect_s=1.0, read_s=2.0, attempts=3, limit_s=10, max_attempts=10
            ),
            sqs=env.timeouts("SQS", connect_s=1.0, read_s=2.0, attempts=3, limit_s=10, max_attempts=10),
            trending=TrendingSettings.from_env(env),
        )


@dataclass(frozen=True)
class RecommendSettings:
    """The recommendations API: the table, the model, the ranking rules, the read budget."""

    table_name: str
    model_dir: str
    # The model registry (rtrec.registry): hot swap to the version the pointer names; None = layer only.
    registry: ModelRegistrySettings | None
    allowed_origins: tuple[str, ...]
    retrieval_size: int
    exploration_share: float
    exploration_rate: float
    genre_cap_share: float
    dynamodb: ClientTimeouts
    per_user_requests: RateLimit
    catalog_table: str | None
    catalog_refresh_s: float
    promotion_share: float
    promotion_filter: ItemFilter
    # The running experiment (rtrec.experiments); None = no experiment parameter configured.
    experiments: ExperimentSettings | None = None
    new_item_rate: float = 1.0
    # Rotation (rtrec.rotation): a shown item's penalty right after it was shown (0 = off) and how long
    # until it has recovered; paging (rtrec.paging): how long after the first page `after` continues a list.
    rotation_rate: float = 0.1
    rotation_time_s: int = 7_200
    paging_window_s: int = 1_800
    # Live item popularity for cold users and the popular fallback; None = the artifact's counts.
    trending: TrendingSettings | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RecommendSettings:
        env = _Reader(environ)
        return cls(
            table_name=env.text("USER_STATE_TABLE"),
            model_dir=env.text("MODEL_DIR"),
            registry=ModelRegistrySettings.from_env(env),
            allowed_origins=env.origins("ALLOWED_ORIGINS"),
            retrieval_size=env.integer("RETRIEVAL_SIZE", 128, 1, 4096),
            # At most half the list explores: beyond that the answer stops being a recommendation.
            exploration_share=env.number("EXPLORATION_SHARE", 0.1, 0.0, 0.5),
            # Defaults = the template's, chosen on the validation split (docs/ARCHITECTURE.md "Quality as
            # served"): exploring costs an answer about 0.018 HR@10, so a fifth of the answers explore; a
            # cap of 0.6 costs nothing measurable there while 0.5 cost about 0.008 HR@10.
            exploration_rate=env.number("EXPLORATION_RATE", 0.2, 0.0, 1.0),
            genre_cap_share=env.number("GENRE_CAP_SHARE", 0.6, 0.05, 1.0),
            # A degraded answer (popular items) within a second beats a late personalised one. One
            # attempt: botocore's backoff before a retry can alone take up to a second; the client's
            # next request is the retry.
            dynamodb=env.timeouts(
                "DYNAMODB", connect_s=0.25, read_s=0.5, attempts=1, limit_s=5, max_attempts=5
            ),
            per_user_requests=RateLimit(
                rate=env.number("PER_USER_REQUEST_RATE", 5, 0, 1000),
                burst=env.number("PER_USER_REQUEST_BURST", 20, 1, 10_000),
            ),
            catalog_table=(env.environ.get("CATALOG_TABLE") or "").strip() or None,
            catalog_refresh_s=env.number("CATALOG_REFRESH_S", 5.0, 0.5, 3600),
            promotion_share=env.number("PROMOTION_SHARE", 0.0, 0.0, 0.5),
            promotion_filter=env.item_filter("PROMOTION_FILTER"),
            experiments=ExperimentSettings.from_env(env),
            # Share of answers whose exploration slot goes to a new item (one the model never saw).
            new_item_rate=env.number("NEW_ITEM_EXPLORATION_RATE", 1.0, 0.0, 1.0),
            # Recombee's rotationRate / rotationTime defaults; the time and the window are bounded by the
            # state's shown list, which keeps a day (rtrec.rotation.SHOWN_HORIZON_S).
            rotation_rate=env.number("ROTATION_RATE", 0.1, 0.0, 1.0),
            rotation_time_s=env.integer("ROTATION_TIME_SECONDS", 7_200, 60, 86_400),
            paging_window_s=env.integer("PAGING_WINDOW_SECONDS", 1_800, 60, 86_400),
            trending=TrendingSettings.from_env(env),
        )


@dataclass(frozen=True)
class CatalogSettings:
    """The catalog admin API: the table and its write budget."""

    table_name: str
    dynamodb: ClientTimeouts

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CatalogSettings:
        env = _Reader(environ)
        return cls(
            table_name=env.text("CATALOG_TABLE"),
            dynamodb=env.timeouts(
                "DYNAMODB", connect_s=1.0, read_s=2.0, attempts=2, limit_s=5, max_attempts=5
            ),
        )
