"""What each route accepts: the requests of the public API, parsed in one place with one error type.

Every function here takes the raw parts of an HTTP API event (query parameters, headers, body) and
returns the typed request, or raises ``rtrec.http.RequestError`` (a 4xx in the one error shape).
Handlers parse with these, call a core service, and shape the answer. The OpenAPI document
(functions/recommend/schemas.py) states the same limits, from the constants here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtrec.catalog import MAX_CATEGORY_LENGTH, MAX_FILTER_LENGTH, InvalidFilter, ItemFilter, parse_filter
from rtrec.events import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST, MAX_ID_LENGTH, InvalidEvent, check_text
from rtrec.http import RequestError, id_list, json_body, query
from rtrec.paging import Cursor, InvalidCursor, parse_cursor

MAX_K = 100
MAX_LIST_ITEMS = 500
MAX_GENRE_PARAMETER = 400
MAX_EXCLUDE_PARAMETER = MAX_LIST_ITEMS * (MAX_ID_LENGTH + 1)
MAX_CATEGORY_PARAMETER = 2000
MAX_RANK_BODY_BYTES = 64 * 1024

_RECOMMENDATIONS_QUERY = {
    "k": 8,
    "genre": MAX_GENRE_PARAMETER,
    "category": MAX_CATEGORY_PARAMETER,
    "filter": MAX_FILTER_LENGTH,
    "exclude": MAX_EXCLUDE_PARAMETER,
    "after": MAX_ID_LENGTH,
}
_SIMILAR_QUERY = {"k": 8, "category": MAX_CATEGORY_PARAMETER, "filter": MAX_FILTER_LENGTH}


@dataclass(frozen=True)
class RecommendationsRequest:
    """GET /v1/recommendations."""

    k: int
    genres: tuple[str, ...]
    item_filter: ItemFilter
    exclude: tuple[str, ...]
    # The page before this one (its recommendation_id): None asks for a first page.
    after: Cursor | None = None


@dataclass(frozen=True)
class SimilarRequest:
    """GET /v1/items/{item_id}/similar."""

    item_id: str
    k: int
    item_filter: ItemFilter


def no_parameters(parameters: Mapping[str, str] | None) -> None:
    """Routes that take no query parameter refuse any."""
    query(parameters, set(), {})


def recommendations(
    parameters: Mapping[str, str] | None, category_by_lower: Mapping[str, str]
) -> RecommendationsRequest:
    """`k`, `category` (or its older name `genre`, any case), `filter`, `exclude` and `after`."""
    values = query(parameters, set(_RECOMMENDATIONS_QUERY), _RECOMMENDATIONS_QUERY)
    genres = tuple(
        dict.fromkeys(
            category_by_lower.get(name.strip().lower(), name.strip())
            for name in id_list("genre", values.get("genre"), MAX_CATEGORY_LENGTH)
        )
    )
    return RecommendationsRequest(
        k=parse_k(values.get("k")),
        genres=genres,
        item_filter=item_filter(values.get("category"), values.get("filter"), genres),
        exclude=tuple(id_list("exclude", values.get("exclude"), MAX_ID_LENGTH)),
        after=after_cursor(values.get("after")),
    )


def after_cursor(raw: str | None) -> Cursor | None:
    """`after`: the recommendation_id of the page to continue (its format; the handler checks its age)."""
    if raw is None:
        return None
    try:
        return parse_cursor(raw)
    except InvalidCursor as error:
        raise RequestError(400, "invalid request", [f"query.after: {error}"]) from None


def similar(item_id: str, parameters: Mapping[str, str] | None) -> SimilarRequest:
    """The path's item id, `k`, `category` and `filter`."""
    values = query(parameters, set(_SIMILAR_QUERY), _SIMILAR_QUERY)
    try:
        checked = check_text(item_id, "path.item_id", MAX_ID_LENGTH)
    except InvalidEvent as error:
        raise RequestError(400, "invalid request", [str(error)]) from None
    return SimilarRequest(
        checked, parse_k(values.get("k")), item_filter(values.get("category"), values.get("filter"))
    )


def rank_item_ids(
    headers: Mapping[str, str] | None, body: str | None, is_base64_encoded: bool | None
) -> list[str]:
    """The body's `item_ids`: a JSON object with only that field, 1..500 ids of 1..64 characters."""
    raw = json_body(
        headers,
        body,
        bool(is_base64_encoded),
        MAX_RANK_BODY_BYTES,
        'a JSON object like {"item_ids": ["1", "2"]}',
    )
    if not isinstance(raw, dict):
        raise RequestError(400, "invalid request", [f"body: must be a JSON object, got {type(raw).__name__}"])
    extra = sorted(set(raw) - {"item_ids"})
    if extra:
        raise RequestError(
            400,
            "invalid request",
            [f"body.{name[:40]!r}: unknown field (accepted: item_ids)" for name in extra[:10]],
        )
    item_ids = raw.get("item_ids")
    if item_ids is None:
        raise RequestError(400, "invalid request", ["body.item_ids: required"])
    if not isinstance(item_ids, list) or not 1 <= len(item_ids) <= MAX_LIST_ITEMS:
        raise RequestError(
            400, "invalid request", [f"body.item_ids: must be a list of 1 to {MAX_LIST_ITEMS} item ids"]
        )
    bad = []
    for n, item_id in enumerate(item_ids):
        try:
            check_text(item_id, f"body.item_ids.{n}", MAX_ID_LENGTH)
        except InvalidEvent as error:
            bad.append(str(error))
    if bad:
        raise RequestError(400, "invalid request", bad[:10])
    return item_ids


def events_body(
    headers: Mapping[str, str] | None, body: str | None, is_base64_encoded: bool | None
) -> list[Any]:
    """POST /v1/events: `{"events": [...]}` with 1..100 events (each is validated on its own)."""
    raw = json_body(
        headers, body, bool(is_base64_encoded), MAX_BODY_BYTES, 'a JSON object like {"events": [...]}'
    )
    if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
        raise RequestError(400, "invalid request", ['body: must be an object with an "events" array'])
    extra = sorted(set(raw) - {"events"})
    if extra:
        raise RequestError(
            400, "invalid request", [f"body.{name[:40]!r}: unknown field" for name in extra[:10]]
        )
    events: list[Any] = raw["events"]
    if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
        raise RequestError(
            400,
            "invalid request",
            [f"body.events: must hold 1 to {MAX_EVENTS_PER_REQUEST} events, not {len(events)}"],
        )
    return events


def parse_k(raw: str | None) -> int:
    """How many items: an integer from 1 to MAX_K (default 10)."""
    if raw is None:
        return 10
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 4) or not 1 <= int(text) <= MAX_K:
        raise RequestError(
            400, "invalid request", [f"query.k: must be an integer from 1 to {MAX_K}, got {raw[:20]!r}"]
        )
    return int(text)


def item_filter(categories: str | None, expression: str | None, genres: Sequence[str] = ()) -> ItemFilter:
    """Categories (any of; `genre` names join them) and attribute predicates (all of)."""
    try:
        predicates = parse_filter(expression)
    except InvalidFilter as error:
        raise RequestError(400, "invalid request", [f"query.filter: {error}"]) from None
    names = frozenset(id_list("category", categories, MAX_CATEGORY_LENGTH)) | frozenset(genres)
    return ItemFilter(names, predicates)
