"""Recommendations API: GET /v1/recommendations, POST /v1/recommendations/rank, GET /v1/interests.

Thin handler: authenticate (the JWT `sub` is the user), validate, read the caller's state
with a strongly consistent read, ask the `Recommender`, shape the response, emit metrics.
The model is loaded once per container at import; if it cannot load or a call fails, the
answer comes from popularity with `"degraded": true` instead of an error.

Requests are validated here by hand, not by pydantic through Powertools' validation middleware:
importing pydantic would be paid at every cold start (measured in README.md). The documented
shapes live in `schemas.py` (dev time), from which `openapi.py` writes docs/openapi.json; the
OpenAPI tests hold both to each other.
"""

# ruff: noqa: E402
# The cyclic GC would run many times over the objects imports create, all of which live as long as the
# container; it is paused for the init and the survivors frozen (see the end of the module).
import gc

gc.disable()

import copy
import json
import time
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtrec import api_requests, paging
from rtrec.experiments import MAX_VARIANTS, Assignment, configured, watch_experiments
from rtrec.http import (
    NO_STORE,
    RequestError,
    caller_id,
    claims_of,
    install_error_handlers,
    too_many,
)
from rtrec.impressions import impression_record
from rtrec.limits import PerUserLimiter
from rtrec.live_catalog import LiveCatalog
from rtrec.ranking import Pick
from rtrec.recommender import Outcome, Recommender, RecommenderConfig
from rtrec.registry import BOOTSTRAP, ModelSource, ModelWatcher, watch_registry
from rtrec.rotation import RotationPolicy
from rtrec.settings import ModelRegistrySettings, RecommendSettings
from rtrec.stores.catalog import CatalogStore
from rtrec.stores.clients import aws_client
from rtrec.stores.errors import StoreError
from rtrec.stores.trending import TrendingTable
from rtrec.stores.user_state import UserStateStore
from rtrec.trending import LiveTrending

try:  # Lambda's python3.12+ runtime; SnapStart calls the registered hooks after each restore
    from snapshot_restore_py import register_after_restore
except ImportError:  # elsewhere (tests, the local stack) nothing is restored

    def register_after_restore(hook: Any) -> Any:
        return hook


logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _cors(allowed: Sequence[str]) -> CORSConfig | None:
    """CORS for the configured origins only (settings drop `*`); none configured means no CORS headers."""
    if not allowed:
        return None
    return CORSConfig(allow_origin=allowed[0], extra_origins=list(allowed[1:]), max_age=600)


settings = RecommendSettings.from_env()
app = APIGatewayHttpResolver(cors=_cors(settings.allowed_origins))
install_error_handlers(app, logger)
user_states = UserStateStore.from_client(aws_client("dynamodb", settings.dynamodb), settings.table_name)
per_user = PerUserLimiter(settings.per_user_requests)
config = RecommenderConfig(
    retrieval_size=settings.retrieval_size,
    exploration_share=settings.exploration_share,
    exploration_rate=settings.exploration_rate,
    new_item_rate=settings.new_item_rate,
    genre_cap_share=settings.genre_cap_share,
    promotion_share=settings.promotion_share,
    promotion_filter=settings.promotion_filter,
)
# Recently shown items rotate down (rtrec.rotation); ROTATION_RATE 0 turns it off.
rotation = RotationPolicy(rate=settings.rotation_rate, time_s=settings.rotation_time_s)
# The layer's model: the bootstrap, and what answers whenever the registry has nothing better.
recommender = Recommender.from_model_dir(settings.model_dir, config)


def follow_trending() -> LiveTrending | None:
    """Live item popularity from the trending table, or None (TRENDING_TABLE not set: static counts).

    Nothing is read at init: the first request reads the window, later ones only the open buckets,
    at most once per TRENDING_REFRESH_S. One follower serves every model version (the table is not
    the model's).
    """
    if settings.trending is None:
        return None
    options = settings.trending
    client = aws_client("dynamodb", settings.dynamodb)
    table = TrendingTable(client, options.table_name, options.config.shards)
    return LiveTrending(table, options.config, refresh_s=options.refresh_s)


trending = follow_trending()


def follow_catalog(table_name: str | None, serving: Recommender | None = None) -> LiveCatalog | None:
    """The catalog table's live view over the model's items (read whole on first use, then its changes)."""
    serving = serving or recommender
    if not table_name or serving.catalog is None:
        return None
    source = CatalogStore(aws_client("dynamodb", settings.dynamodb), table_name)
    # The first request reads the feed whole (a snapshot restored later must not serve init's view).
    return LiveCatalog(serving.catalog, source, refresh_s=settings.catalog_refresh_s)


def with_live_catalog(serving: Recommender) -> Recommender:
    """``serving`` following the catalog table over its own model's items (each version has its own)."""
    serving.live = follow_catalog(settings.catalog_table, serving) or (
        LiveCatalog(serving.catalog) if serving.catalog is not None else None
    )
    serving.trending = trending
    return serving


def categories_by_lower(serving: Recommender) -> dict[str, str]:
    """The model's category names by their lower case: `genre` matches them in any case."""
    return {name.lower(): name for name in (serving.catalog.categories if serving.catalog else ())}


recommender = with_live_catalog(recommender)
_CATEGORY_BY_LOWER = categories_by_lower(recommender)
_BOOTSTRAP_VERSION = recommender.model_version or BOOTSTRAP


def follow_registry(registry: ModelRegistrySettings | None) -> ModelWatcher[Recommender] | None:
    """The hot swap: a watcher on the registry's pointer, or None (the layer's model only).

    Powertools Parameters caches the pointer for its max age, and the watcher looks at most that
    often: one SSM call per container per max age, nothing per request.
    """
    if registry is None:
        return None

    def load(source: ModelSource, version: str) -> Recommender:
        scorer = source.load(version)  # downloaded, checked against its manifest, smoke-scored
        source.prune({version, recommender.model_version or ""})
        return with_live_catalog(Recommender(scorer.catalog, scorer, config))

    def load_bootstrap() -> Recommender:
        serving = Recommender.from_model_dir(settings.model_dir, config)
        if serving.scorer is None:
            raise RuntimeError(serving.load_error or "the layer's model does not load")
        return with_live_catalog(serving)

    loaded = recommender.model_version or _BOOTSTRAP_VERSION
    return watch_registry(registry, load, load_bootstrap, loaded, _BOOTSTRAP_VERSION, _model_failure)


def _model_failure(kind: str, message: str, error: BaseException) -> None:
    """A pointer that cannot be read or a version that does not load: the loaded model keeps answering."""
    logger.error(message, extra={"error": f"{type(error).__name__}: {error}"})
    name = "ModelLoadFailures" if kind == "load" else "ModelPointerReadFailures"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


model_updates = follow_registry(settings.registry)


def _experiment_failure(kind: str, message: str) -> None:
    """An unreadable or invalid experiment parameter: the last good experiment keeps running."""
    logger.error(message)
    name = "ExperimentConfigRejected" if kind == "invalid" else "ExperimentReadFailures"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


# The running experiment (rtrec.experiments): read through Powertools Parameters at most once per
# max age, its SSM client made at the first look; None when no parameter is configured.
experiments = watch_experiments(settings.experiments, _experiment_failure) if settings.experiments else None
# One Recommender per variant with rule settings: a shallow copy of the serving one (same catalog,
# scorer and live view) with the variant's config, rebuilt when the model or the settings change.
_variant_recommenders: dict[tuple[str, str, str], Recommender] = {}
_variants_of: list[Recommender] = []  # the serving recommender the copies were made from
_request_started = time.perf_counter()


def follow_model() -> None:
    """Swap in the version the pointer names, if it moved (at most one look per max age).

    The swap replaces the module's `recommender` (and its category names) between requests: a request
    sees one model from start to end, and the old one is dropped once nothing refers to it.
    """
    global recommender, _CATEGORY_BY_LOWER
    if model_updates is None:
        return
    swap = model_updates.poll()
    if swap is None:
        return
    previous = recommender.model_version
    recommender, _CATEGORY_BY_LOWER = swap.model, categories_by_lower(swap.model)
    metrics.add_metric(name="ModelSwaps", unit=MetricUnit.Count, value=1)
    logger.info("model swapped", extra={"model_version": swap.version, "previous": previous})


@register_after_restore
def renew_after_restore() -> None:
    """SnapStart: every restored copy shares what init made; give each its own connections.

    Recommendation ids and exploration seeds come from os.urandom (rtrec.paging) per request, so
    nothing else made at init must differ between copies.
    """
    global user_states, model_updates, experiments, trending
    user_states = UserStateStore.from_client(aws_client("dynamodb", settings.dynamodb), settings.table_name)
    model_updates = follow_registry(settings.registry)  # its SSM and S3 clients too
    if settings.experiments is not None:
        experiments = watch_experiments(settings.experiments, _experiment_failure)
    trending = follow_trending()
    recommender.trending = trending


if recommender.load_error:
    logger.error("model unavailable, serving popular items", extra={"reason": recommender.load_error})

# Answers can be large (500 items): trace the routes without copying them into X-Ray segments.
traced = tracer.capture_method(capture_response=False)


@app.get(
    "/v1/recommendations",
    summary="Top-k items for the caller",
    description="Unseen items ranked by the model for the token's user, genre-capped, with exploration.",
)
@traced
def get_recommendations():
    """Top-k unseen items for the caller: model retrieval + ranking, then the ranking rules.

    With `after` (an earlier page's recommendation_id), the next page of that list: nothing it showed.
    """
    user_id = _caller()
    request = api_requests.recommendations(app.current_event.query_string_parameters, _CATEGORY_BY_LOWER)
    now_ms = int(time.time() * 1000)
    if request.after is not None:
        try:
            paging.check_cursor(request.after, now_ms, settings.paging_window_s)
        except paging.InvalidCursor as error:  # a well-formed id that no page continues: nothing found
            raise RequestError(404, "no such page", [f"query.after: {error}"]) from None
    _follow_catalog()
    _follow_trending()
    state, read_failure = _read_state(user_id)
    if request.after is not None:
        root, page = request.after.root, request.after.page + 1
        recommendation_id = paging.page_id(root, page)
        logger.append_keys(recommendation_id=recommendation_id)
    else:  # the id records the state this answer read, so later pages can start from the same one
        recommendation_id = root = _new_recommendation_id(now_ms, paging.snapshot_marker(state, now_ms))
        page = 1
    serving, assignment = _serving(user_id)
    outcome = paging.recommend_page(
        serving,
        state,
        paging.PageRequest(request.k, request.genres, request.exclude, request.item_filter),
        root,
        page,
        now_ms,
        rotation,
    )
    _observe("recommendations", outcome, read_failure)
    return _ranked_answer(user_id, recommendation_id, outcome, read_failure, assignment)


@app.post(
    "/v1/recommendations/rank",
    summary="Rank the caller's own candidates",
    description="Orders up to 500 item ids for the token's user; unknown ids are reported back.",
)
@traced
def rank_items():
    """The caller's own candidates in the model's order; unknown ids are listed, not ranked."""
    user_id = _caller()
    event = app.current_event
    api_requests.no_parameters(event.query_string_parameters)
    item_ids = api_requests.rank_item_ids(event.headers, event.body, event.is_base64_encoded)
    recommendation_id = _new_recommendation_id()
    _follow_trending()
    state, read_failure = _read_state(user_id)
    serving, assignment = _serving(user_id)
    outcome = serving.rank(state, item_ids)
    _observe("rank", outcome, read_failure)
    return _ranked_answer(
        user_id,
        recommendation_id,
        outcome,
        read_failure,
        assignment,
        unknown_item_ids=outcome.unknown_item_ids,
    )


@app.get(
    "/v1/items/<item_id>/similar",
    summary="Items like this one",
    description="Nearest items by the model's item vectors (new items: by their categories), same filters.",
)
@traced
def get_similar_items(item_id: str):
    """A "more like this" shelf: available items closest to ``item_id``, filtered like recommendations."""
    user_id = _caller()
    request = api_requests.similar(item_id, app.current_event.query_string_parameters)
    _follow_catalog()
    _follow_trending()
    serving, assignment = _serving(user_id)
    outcome = serving.similar(request.item_id, request.k, request.item_filter)
    if outcome is None:
        raise RequestError(404, "no such item", [f"path.item_id: {request.item_id!r} is not in the catalog"])
    _observe("similar", outcome, False)
    return _ranked_answer(user_id, _new_recommendation_id(), outcome, False, assignment)


@app.get(
    "/v1/interests",
    summary="The caller's predicted genre interests",
    description="Distribution over the 19 genres from the model's interest head for the token's user.",
)
@traced
def get_interests():
    """The caller's interest distribution over the 19 genres."""
    user_id = _caller()
    api_requests.no_parameters(app.current_event.query_string_parameters)
    state, read_failure = _read_state(user_id)
    outcome = recommender.interests(state)
    _observe("interests", outcome, read_failure)
    return _json(
        {
            "model_version": recommender.model_version,
            "degraded": outcome.degraded or read_failure,
            "source": outcome.source,
            "interests": outcome.interests,
        }
    )


@app.delete(
    "/v1/me",
    summary="Erase the caller's data",
    description="Deletes the token user's state (history, interests, counters). Idempotent.",
)
@traced
def delete_me():
    """Remove the caller's state item; a user with no state gets the same 204."""
    user_id = _caller()
    api_requests.no_parameters(app.current_event.query_string_parameters)
    try:
        user_states.delete(user_id)
    except StoreError as error:
        logger.warning("state delete failed", extra={"error": str(error)})
        raise RequestError(
            503, "the user store is unavailable; nothing was deleted, retry", headers={"Retry-After": "1"}
        ) from error
    metrics.add_metric(name="UsersErased", unit=MetricUnit.Count, value=1)
    return Response(status_code=204, headers=dict(NO_STORE))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    global _request_started
    started = _request_started = time.perf_counter()
    follow_model()
    response = app.resolve(event, context)
    metrics.add_metric(
        name="Latency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    return response


def _caller() -> str:
    """The user is the token's subject, never a parameter: that is what keeps users apart.

    Each request spends one token of the user's per-container bucket (429 when it is empty).
    """
    user_id = caller_id(claims_of(app.current_event))
    too_many(per_user.take(user_id))
    return user_id


def _read_state(user_id: str) -> tuple[Any, bool]:
    """Strongly consistent read of the caller's state; a failed read degrades instead of failing."""
    try:
        return user_states.get(user_id, consistent=True), False
    except StoreError as error:  # expected trouble (timeouts, throttling): a line, not a traceback
        logger.warning("user state read failed, answering without it", extra={"error": str(error)})
    except Exception:
        logger.exception("user state read failed, answering without it")
    metrics.add_metric(name="StateReadFailures", unit=MetricUnit.Count, value=1)
    return None, True


def _observe(route: str, outcome: Outcome, read_failure: bool) -> None:
    """Metrics and one log line per answer: what answered, how much was scored, whether degraded."""
    metrics.add_metric(name="CandidatesScored", unit=MetricUnit.Count, value=outcome.candidates_scored)
    if outcome.degraded:
        metrics.add_metric(name="DegradedResponses", unit=MetricUnit.Count, value=1)
        logger.warning("degraded answer from popularity", extra={"failure": outcome.failure})
    if outcome.source in ("cold_start", "popular") and not outcome.degraded:
        metrics.add_metric(name="ColdStartResponses", unit=MetricUnit.Count, value=1)
    logger.info(
        "answered",
        extra={
            "route": route,
            "source": outcome.source,
            "items": len(outcome.picks),
            "candidates_scored": outcome.candidates_scored,
            "degraded": outcome.degraded or read_failure,
        },
    )


def _new_recommendation_id(now_ms: int | None = None, marker: int = 0) -> str:
    """A fresh id for this answer (time-ordered and random: rtrec.paging), also on the request's log lines."""
    recommendation_id = paging.new_root(int(time.time() * 1000) if now_ms is None else now_ms, marker)
    logger.append_keys(recommendation_id=recommendation_id)
    return recommendation_id


def _serving(user_id: str) -> tuple[Recommender, Assignment | None]:
    """The recommender for the caller's experiment variant (its rule settings), and the assignment."""
    assignment = experiments.assign(user_id, int(time.time() * 1000)) if experiments is not None else None
    if assignment is None or not assignment.variant.settings:
        return recommender, assignment
    if not _variants_of or _variants_of[0] is not recommender:  # a swapped model: the old copies go
        _variant_recommenders.clear()
        _variants_of[:] = [recommender]
    variant = assignment.variant
    key = (assignment.experiment, variant.name, json.dumps(variant.settings, sort_keys=True))
    serving = _variant_recommenders.get(key)
    if serving is None:
        if len(_variant_recommenders) >= 4 * MAX_VARIANTS:  # settings edited many times: start over
            _variant_recommenders.clear()
        serving = copy.copy(recommender)
        serving.config = configured(recommender.config, assignment.variant)
        _variant_recommenders[key] = serving
    return serving, assignment


def _ranked_answer(
    user_id: str,
    recommendation_id: str,
    outcome: Outcome,
    read_failure: bool,
    assignment: Assignment | None = None,
    **extra: Any,
) -> Response:
    """The body shared by the ranked-item routes, and the impression of what it shows."""
    items = _items(outcome.picks)
    experiment = assignment.experiment if assignment else None
    variant = assignment.variant.name if assignment else None
    degraded = outcome.degraded or read_failure
    logger.info(
        "impression",
        extra=impression_record(
            recommendation_id,
            user_id,
            app.current_event.request_context.route_key,
            recommender.model_version,
            [(item["item_id"], item["reason"]) for item in items],
            int(time.time() * 1000),
            variant,
            experiment=experiment,
            source=outcome.source,
            degraded=degraded,
            latency_ms=(time.perf_counter() - _request_started) * 1000,
        ),
    )
    return _json(
        {
            "recommendation_id": recommendation_id,
            "model_version": recommender.model_version,
            "degraded": degraded,
            "source": outcome.source,
            "experiment": experiment,
            "variant": variant,
            "items": items,
            **extra,
        }
    )


def _items(picks: Sequence[Pick]) -> list[dict[str, Any]]:
    """Items as the documented `ScoredItem`s (plain dicts: building 500 models per answer is slow)."""
    if recommender.catalog is None:
        return []
    return [
        {
            "item_id": recommender.item_id_at(pick.index),
            "score": round(pick.score, 6),
            "reason": pick.reason,
            "categories": recommender.categories_at(pick.index),
        }
        for pick in picks
    ]


def _follow_catalog() -> None:
    """Apply the catalog table's changes when the last look is older than the refresh interval."""
    live = recommender.live
    if live is not None and live.maybe_refresh():
        metrics.add_metric(name="CatalogRefreshes", unit=MetricUnit.Count, value=1)


def _follow_trending() -> None:
    """Read the trending counters again when the last look is older than the refresh interval.

    A failed read keeps the last scores (or the artifact's counts before the first success).
    """
    if trending is None:
        return
    refreshed = trending.maybe_refresh()
    if refreshed is False:
        metrics.add_metric(name="TrendingReadFailures", unit=MetricUnit.Count, value=1)


def _json(payload: dict[str, Any]) -> Response:
    """A 200 with the body serialised once, here, and never stored by a shared cache (it is personal).

    The answer models are documented in `schemas.py`, not built here (500 models per answer cost
    milliseconds); the OpenAPI tests validate real answers against those schemas instead.
    """
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(payload, separators=(",", ":")),
        headers=dict(NO_STORE),
    )


# Everything built during init (numpy, botocore models, the catalog) lives as long as the container:
# freezing it keeps the cyclic GC from re-scanning it, which was the p99 tail of large answers.
gc.freeze()
gc.enable()
