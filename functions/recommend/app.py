"""Recommendations API: GET /v1/recommendations, POST /v1/recommendations/rank, GET /v1/interests.

Thin handler: authenticate (the JWT `sub` is the user), validate, read the caller's state
with a strongly consistent read, ask the `Recommender`, shape the response, emit metrics.
The model is loaded once per container at import; if it cannot load or a call fails, the
answer comes from popularity with `"degraded": true` instead of an error.
"""

import gc
import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rtrec.events import MAX_ID_LENGTH
from rtrec.features import GENRES
from rtrec.ranking import REASONS, Pick
from rtrec.recommender import Outcome, Recommender, RecommenderConfig
from rtrec.stores.user_state import UserStateStore

MAX_K = 100
MAX_LIST_ITEMS = 500
_GENRE_BY_LOWER = {genre.lower(): genre for genre in GENRES}

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _cors(origins: str) -> CORSConfig | None:
    """CORS for the configured origins only; none configured means no CORS headers at all.

    A `*` entry is dropped: a wildcard would let any site read a user's recommendations.
    """
    allowed = [o.strip() for o in origins.split(",") if o.strip() and o.strip() != "*"]
    if not allowed:
        return None
    return CORSConfig(allow_origin=allowed[0], extra_origins=allowed[1:], max_age=600)


app = APIGatewayHttpResolver(cors=_cors(os.environ.get("ALLOWED_ORIGINS", "")), enable_validation=True)
user_states = UserStateStore.from_env()
recommender = Recommender.from_model_dir(os.environ["MODEL_DIR"], RecommenderConfig.from_env())
if recommender.load_error:
    logger.error("model unavailable, serving popular items", extra={"reason": recommender.load_error})

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Reason = Literal[REASONS]  # type: ignore[valid-type]


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="Higher is better; model scores and popularity are not comparable.")
    reason: Reason = Field(description="Why the item is here: model, explore, popular or cold_start.")
    genres: list[str]


class RecommendationsResponse(BaseModel):
    recommendation_id: str = Field(
        description="Echo it as `recommendation_id` in events caused by this list."
    )
    model_version: str | None
    degraded: bool = Field(description="True when the model was unavailable and popularity answered.")
    source: str = Field(
        description="model, cold_start (no known history) or popular (no state, or degraded)."
    )
    items: list[ScoredItem]


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_LIST_ITEMS)


class RankResponse(RecommendationsResponse):
    unknown_item_ids: list[str] = Field(description="Requested ids the catalog does not know (not ranked).")


class InterestsResponse(BaseModel):
    model_version: str | None
    degraded: bool
    source: str = Field(
        description="model, state (decayed interests from events) or popular (catalog prior)."
    )
    interests: dict[str, float] = Field(description="Probability per genre; sums to 1.")


class ErrorResponse(BaseModel):
    message: str
    errors: list[str] = []


# Answers can be large (500 items): trace the routes without copying them into X-Ray segments.
traced = tracer.capture_method(capture_response=False)


def _responses(model: type[BaseModel]) -> dict[int, dict[str, Any]]:
    """OpenAPI responses of a route: its answer, and the two errors every route can give."""

    def json_of(schema: type[BaseModel]) -> dict[str, Any]:
        return {"application/json": {"model": schema}}

    return {
        200: {"description": "The answer", "content": json_of(model)},
        400: {"description": "Invalid request", "content": json_of(ErrorResponse)},
        401: {"description": "Missing or invalid token", "content": json_of(ErrorResponse)},
    }


@app.get(
    "/v1/recommendations",
    summary="Top-k items for the caller",
    description="Unseen items ranked by the model for the token's user, genre-capped, with exploration.",
    responses=_responses(RecommendationsResponse),
)
@traced
def get_recommendations(
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items (1..100).")] = 10,
    genre: Annotated[
        str | None,
        Query(max_length=400, description="Comma-separated genres to restrict to, e.g. Action,Drama."),
    ] = None,
    exclude: Annotated[
        str | None,
        Query(
            max_length=MAX_LIST_ITEMS * (MAX_ID_LENGTH + 1), description="Comma-separated item ids (≤ 500)."
        ),
    ] = None,
):
    """Top-k unseen items for the caller: model retrieval + ranking, then the ranking rules."""
    user_id = _caller()
    _refuse_unknown_parameters({"k", "genre", "exclude"})
    genres = _parse_genres(genre)
    excluded = _parse_list("exclude", exclude)
    recommendation_id = uuid.uuid4().hex
    logger.append_keys(recommendation_id=recommendation_id)
    rng = np.random.default_rng(uuid.UUID(recommendation_id).int)
    state, read_failure = _read_state(user_id)
    outcome = recommender.recommend(state, k, rng, filter_genres=genres, exclude_item_ids=excluded)
    _observe("recommendations", outcome, read_failure)
    return _json(
        {
            "recommendation_id": recommendation_id,
            "model_version": recommender.model_version,
            "degraded": outcome.degraded or read_failure,
            "source": outcome.source,
            "items": _items(outcome.picks),
        }
    )


@app.post(
    "/v1/recommendations/rank",
    summary="Rank the caller's own candidates",
    description="Orders up to 500 item ids for the token's user; unknown ids are reported back.",
    responses={
        **_responses(RankResponse),
        415: {"description": "Body is not JSON", "content": {"application/json": {"model": ErrorResponse}}},
    },
)
@traced
def rank_items(request: Annotated[RankRequest, Body()]):
    """The caller's own candidates in the model's order; unknown ids are listed, not ranked."""
    user_id = _caller()
    _refuse_unknown_parameters(set())
    recommendation_id = uuid.uuid4().hex
    logger.append_keys(recommendation_id=recommendation_id)
    state, read_failure = _read_state(user_id)
    outcome = recommender.rank(state, request.item_ids)
    _observe("rank", outcome, read_failure)
    return _json(
        {
            "recommendation_id": recommendation_id,
            "model_version": recommender.model_version,
            "degraded": outcome.degraded or read_failure,
            "source": outcome.source,
            "items": _items(outcome.picks),
            "unknown_item_ids": outcome.unknown_item_ids,
        }
    )


@app.get(
    "/v1/interests",
    summary="The caller's predicted genre interests",
    description="Distribution over the 19 genres from the model's interest head for the token's user.",
    responses=_responses(InterestsResponse),
)
@traced
def get_interests():
    """The caller's interest distribution over the 19 genres."""
    user_id = _caller()
    _refuse_unknown_parameters(set())
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


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    # Validation runs before the route, so an anonymous request must still get its 401 first.
    if not _caller_or_none():
        return _error(401, "missing or invalid token")
    details = []
    for entry in error.errors():
        where = ".".join(str(part) for part in entry.get("loc", ()) if part != "request")
        details.append(f"{where}: {entry.get('msg', entry.get('type', 'invalid'))}")
    return _error(400, "invalid request", details)


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(error: RequestUnsupportedContentType) -> Response:
    if not _caller_or_none():
        return _error(401, "missing or invalid token")
    return _error(415, "the body must be JSON (content-type: application/json)")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    started = time.perf_counter()
    response = app.resolve(event, context)
    metrics.add_metric(
        name="Latency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
    )
    return response


def _caller_or_none() -> str | None:
    claims = app.current_event.request_context.authorizer.jwt_claim
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else None


def _caller() -> str:
    """The user is the token's subject, never a parameter: that is what keeps users apart."""
    user_id = _caller_or_none()
    if user_id is None:
        raise UnauthorizedError("missing or invalid token")
    return user_id


def _refuse_unknown_parameters(allowed: set[str]) -> None:
    unknown = sorted(set(app.current_event.query_string_parameters or {}) - allowed)
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise BadRequestError(f"unknown query parameter(s): {', '.join(unknown)} (accepted: {accepted})")


def _parse_list(name: str, raw: str | None) -> list[str]:
    if raw is None:
        return []
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if len(values) > MAX_LIST_ITEMS:
        raise BadRequestError(f"{name}: at most {MAX_LIST_ITEMS} values, got {len(values)}")
    too_long = [v for v in values if len(v) > MAX_ID_LENGTH]
    if too_long:
        raise BadRequestError(f"{name}: ids are at most {MAX_ID_LENGTH} characters")
    return values


def _parse_genres(raw: str | None) -> list[str]:
    genres = []
    for value in _parse_list("genre", raw):
        genre = _GENRE_BY_LOWER.get(value.lower())
        if genre is None:
            raise BadRequestError(f"genre: unknown genre {value!r}; known genres: {', '.join(GENRES)}")
        genres.append(genre)
    return genres


def _read_state(user_id: str) -> tuple[Any, bool]:
    """Strongly consistent read of the caller's state; a failed read degrades instead of failing."""
    try:
        return user_states.get(user_id, consistent=True), False
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


def _items(picks: Sequence[Pick]) -> list[dict[str, Any]]:
    """Items as the documented `ScoredItem`s (plain dicts: building 500 models per answer costs ms)."""
    catalog = recommender.catalog
    if catalog is None:
        return []
    genres = recommender.item_genres
    return [
        {
            "item_id": catalog.item_at(pick.index),
            "score": round(pick.score, 6),
            "reason": pick.reason,
            "genres": genres[pick.index],
        }
        for pick in picks
    ]


def _json(payload: dict[str, Any]) -> Response:
    """A 200 with the body serialised once, here.

    The routes document their answer models in `responses` and carry no return annotation (Powertools
    would re-validate and re-encode the answer from it); they return ready JSON, which skips
    Powertools' response re-validation and its pure-Python encoder (milliseconds for 500 items);
    the OpenAPI tests validate real answers against the documented schemas instead.
    """
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(payload, separators=(",", ":")),
    )


def _error(status: int, message: str, errors: list[str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorResponse(message=message, errors=errors or []).model_dump(),
    )


# Everything built during init (numpy, botocore and pydantic models, the catalog) lives as long as the
# container: freezing it keeps the cyclic GC from re-scanning it, which was the p99 tail of large answers.
gc.freeze()
