"""The Recommendations API's documented request and response shapes (pydantic; dev time only).

The handler (`app.py`) validates requests by hand and builds answers as plain dicts, so pydantic
and Powertools' validation middleware stay off the Lambda's import path (~70 ms of cold start).
`openapi.py` documents each route of the handler's resolver with the signature and responses
declared here; the OpenAPI tests check that real answers match these schemas and that requests
valid under them are accepted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rtrec.api_requests import (
    MAX_CATEGORY_PARAMETER,
    MAX_EXCLUDE_PARAMETER,
    MAX_GENRE_PARAMETER,
    MAX_K,
    MAX_LIST_ITEMS,
)
from rtrec.catalog import MAX_CATEGORY_LENGTH, MAX_FILTER_LENGTH, filter_pattern
from rtrec.events import (
    MAX_CONTEXT_ENTRIES,
    MAX_CONTEXT_VALUE_LENGTH,
    MAX_EVENT_VALUE,
    MAX_EVENTS_PER_REQUEST,
    MAX_ID_LENGTH,
)
from rtrec.features import EVENT_TYPES
from rtrec.http import id_list_pattern
from rtrec.paging import AFTER_PATTERN, MAX_PAGES
from rtrec.ranking import REASONS

# What rtrec.events.check_text accepts: no control characters, not blank.
IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=IDENTIFIER_PATTERN)]

Reason = Literal[REASONS]  # type: ignore[valid-type]


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="Higher is better; model scores and popularity are not comparable.")
    reason: Reason = Field(
        description="Why the item is here: model, explore, new_item (an exploration slot given to an item "
        "added after the model was trained), popular, cold_start, promoted (a promoted slot) or similar"
    )
    categories: list[str] = Field(description="The item's categories, as the catalog says now.")


class RecommendationsResponse(BaseModel):
    recommendation_id: str = Field(
        description=(
            "Echo it as `recommendation_id` in events caused by this list; pass it as `after` "
            "(GET /v1/recommendations) for the next page."
        )
    )
    model_version: str | None
    degraded: bool = Field(description="True when the model was unavailable and popularity answered.")
    source: str = Field(
        description="model, cold_start (no known history) or popular (no state, or degraded)."
    )
    experiment: str | None = Field(
        default=None, description="The running experiment this answer was served under, if any."
    )
    variant: str | None = Field(
        default=None, description="The caller's variant of that experiment (stable per user), if any."
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


class ClientEvent(BaseModel):
    """One behaviour event; the user is the token's `sub`, never a field."""

    model_config = ConfigDict(extra="forbid")
    event_id: ItemId = Field(description="Unique per user; a re-send with the same id counts once (24 h).")
    item_id: ItemId
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    timestamp: int | str = Field(
        description="Epoch milliseconds or ISO-8601 with a zone; from 2000-01-01 to 5 minutes ahead."
    )
    value: float | None = Field(
        default=None,
        description=f"rating: 0..5; other types: 0..{MAX_EVENT_VALUE:g} (a quantity, price or dwell time).",
    )
    session_id: ItemId | None = None
    recommendation_id: ItemId | None = Field(default=None, description="The answer this event follows.")
    context: dict[str, Annotated[str, StringConstraints(max_length=MAX_CONTEXT_VALUE_LENGTH)]] | None = Field(
        default=None,
        max_length=MAX_CONTEXT_ENTRIES,
        description="A flat map of strings (screen, position ...).",
    )


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[ClientEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    reason: str = Field(
        description='Why it was not stored; "retry this event" when sending it again can work.'
    )


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Events written to the stream.")
    rejected: list[RejectedEvent]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


# Every route can answer these: the one error shape, whatever went wrong.
_COMMON_ERRORS = {
    400: _error("Invalid request"),
    401: _error("Missing or invalid token"),
    403: _error("The token's subject cannot be used as a user id"),
    429: _error("Too many requests from this user; see Retry-After"),
}


def _responses(model: type[BaseModel]) -> dict[int, dict[str, Any]]:
    """OpenAPI responses of a route: its answer, and the errors every route can give."""
    return {
        200: {"description": "The answer", "content": {"application/json": {"model": model}}},
        **_COMMON_ERRORS,
    }


# The query parameters the item routes share (the same parsers serve them: rtrec.api_requests).
KParameter = Annotated[int, Query(ge=1, le=MAX_K, description="How many items (1..100).")]
CategoryParameter = Annotated[
    str | None,
    Query(
        max_length=MAX_CATEGORY_PARAMETER,
        pattern=id_list_pattern(MAX_CATEGORY_LENGTH),
        description="Comma-separated categories; an item passes with any of them.",
    ),
]
FilterParameter = Annotated[
    str | None,
    Query(
        max_length=MAX_FILTER_LENGTH,
        pattern=filter_pattern(),
        description=(
            "Attribute predicates joined by `;`, all must hold: `name OP value`, OP one of "
            "= != < <= > >= (`=`/`!=` take alternatives a|b), e.g. `price<=50;brand=acme|globex`."
        ),
    ),
]

# Documentation-only signatures: the names match the handler's route functions (operation ids),
# the parameters are what the handler's hand validation accepts.


def get_recommendations(
    k: KParameter = 10,
    genre: Annotated[
        str | None,
        Query(
            max_length=MAX_GENRE_PARAMETER,
            pattern=id_list_pattern(MAX_CATEGORY_LENGTH),
            description="The older name of `category`; matches the model's category names in any case.",
        ),
    ] = None,
    category: CategoryParameter = None,
    filter: FilterParameter = None,
    exclude: Annotated[
        str | None,
        Query(
            max_length=MAX_EXCLUDE_PARAMETER,
            pattern=id_list_pattern(MAX_ID_LENGTH),
            description="Comma-separated item ids to leave out.",
        ),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_ID_LENGTH,
            pattern=AFTER_PATTERN,
            description=(
                "The `recommendation_id` of the previous page: the answer is the next page of that list, "
                "without any item an earlier page showed. Send the same `k` and filters as the first page. "
                f"Pages continue for 30 minutes (PAGING_WINDOW_SECONDS) after the first, up to {MAX_PAGES} "
                "pages: an expired or last-page id is a 404, a value of another form a 400 (ask again "
                "without `after`)."
            ),
        ),
    ] = None,
):
    """GET /v1/recommendations (documentation only)."""


def rank_items(request: Annotated[RankRequest, Body()]):
    """POST /v1/recommendations/rank (documentation only)."""


def get_interests():
    """GET /v1/interests (documentation only)."""


def get_similar_items(
    item_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=IDENTIFIER_PATTERN)],
    k: KParameter = 10,
    category: CategoryParameter = None,
    filter: FilterParameter = None,
):
    """GET /v1/items/{item_id}/similar (documentation only)."""


def delete_me():
    """DELETE /v1/me (documentation only)."""


def post_events(request: Annotated[EventsRequest, Body()]):
    """POST /v1/events (documentation only)."""


_BODY_ERRORS = {413: _error("Body larger than 64 KiB"), 415: _error("Body is not UTF-8 JSON")}
_UNAVAILABLE = {503: _error("Nothing was done; retry (see Retry-After)")}

ROUTES: dict[tuple[str, str], tuple[Any, dict[int, dict[str, Any]]]] = {
    ("GET", "/v1/recommendations"): (
        get_recommendations,
        {
            **_responses(RecommendationsResponse),
            404: _error(
                "`after` names a list that has expired, its last page, or a time ahead of the service's"
            ),
        },
    ),
    ("POST", "/v1/recommendations/rank"): (rank_items, {**_responses(RankResponse), **_BODY_ERRORS}),
    ("GET", "/v1/interests"): (get_interests, _responses(InterestsResponse)),
    ("GET", "/v1/items/<item_id>/similar"): (
        get_similar_items,
        {**_responses(RecommendationsResponse), 404: _error("The item is not in the catalog")},
    ),
    ("DELETE", "/v1/me"): (
        delete_me,
        {
            204: {"description": "The caller's state is gone (also when there was none)"},
            **_COMMON_ERRORS,
            **_UNAVAILABLE,
        },
    ),
    ("POST", "/v1/events"): (
        post_events,
        {
            202: {
                "description": "Understood; `rejected` lists every event not stored and why",
                "content": {"application/json": {"model": EventsAccepted}},
            },
            **_COMMON_ERRORS,
            **_BODY_ERRORS,
            500: _error("The service is misconfigured (nothing was stored)"),
            **_UNAVAILABLE,
        },
    ),
}
