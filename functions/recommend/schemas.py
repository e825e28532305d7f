"""The Recommendations API's documented request and response shapes (pydantic; dev time only).

The handler (`app.py`) validates requests by hand and builds answers as plain dicts, so pydantic
and Powertools' validation middleware stay off the Lambda's import path (~70 ms of cold start).
`openapi.py` documents each route of the handler's resolver with the signature and responses
declared here; the OpenAPI tests check that real answers match these schemas and that requests
valid under them are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from functions.recommend.app import MAX_K, MAX_LIST_ITEMS
from rtrec.events import MAX_ID_LENGTH
from rtrec.ranking import REASONS

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


def _responses(model: type[BaseModel]) -> dict[int, dict[str, Any]]:
    """OpenAPI responses of a route: its answer, and the two errors every route can give."""

    def json_of(schema: type[BaseModel]) -> dict[str, Any]:
        return {"application/json": {"model": schema}}

    return {
        200: {"description": "The answer", "content": json_of(model)},
        400: {"description": "Invalid request", "content": json_of(ErrorResponse)},
        401: {"description": "Missing or invalid token", "content": json_of(ErrorResponse)},
    }


# Documentation-only signatures: the names match the handler's route functions (operation ids),
# the parameters are what the handler's hand validation accepts.


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
    """GET /v1/recommendations (documentation only)."""


def rank_items(request: Annotated[RankRequest, Body()]):
    """POST /v1/recommendations/rank (documentation only)."""


def get_interests():
    """GET /v1/interests (documentation only)."""


ROUTES: dict[tuple[str, str], tuple[Any, dict[int, dict[str, Any]]]] = {
    ("GET", "/v1/recommendations"): (get_recommendations, _responses(RecommendationsResponse)),
    ("POST", "/v1/recommendations/rank"): (
        rank_items,
        {
            **_responses(RankResponse),
            415: {
                "description": "Body is not JSON",
                "content": {"application/json": {"model": ErrorResponse}},
            },
        },
    ),
    ("GET", "/v1/interests"): (get_interests, _responses(InterestsResponse)),
}
