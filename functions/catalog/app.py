"""Catalog admin API: PUT/GET/DELETE /v1/items/{item_id}, POST /v1/items/batch.

Thin handler: parse (``rtrec.http``), validate (``rtrec.catalog``), write (``rtrec.stores.catalog``).
These routes are authorized apart from end users: API Gateway lets only IAM principals with
``execute-api:Invoke`` on them through (AWS_IAM authorization), so no end-user token can change
the catalog. The recommend function follows the table's change feed within seconds.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtrec.catalog import InvalidItem, validate_item
from rtrec.events import MAX_ID_LENGTH, InvalidEvent, check_text
from rtrec.http import RequestError, install_error_handlers, json_body, query
from rtrec.settings import CatalogSettings
from rtrec.stores.catalog import CatalogStore
from rtrec.stores.clients import aws_client
from rtrec.stores.errors import StoreUnavailable

MAX_BATCH_ITEMS = 100
MAX_ITEM_BODY_BYTES = 64 * 1024
MAX_BATCH_BODY_BYTES = 1024 * 1024

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = CatalogSettings.from_env()
catalog_items = CatalogStore(aws_client("dynamodb", settings.dynamodb), settings.table_name)
app = APIGatewayHttpResolver()
install_error_handlers(app, logger)


def _item_id(raw: str) -> str:
    try:
        return check_text(raw, "path.item_id", MAX_ID_LENGTH)
    except InvalidEvent as error:
        raise RequestError(400, "invalid request", [str(error)]) from None


def _body(max_bytes: int, example: str) -> Any:
    event = app.current_event
    query(event.query_string_parameters, set(), {})
    return json_body(event.headers, event.body, event.is_base64_encoded, max_bytes, example)


def _unavailable(error: StoreUnavailable) -> RequestError:
    logger.warning("catalog table unavailable", extra={"error": str(error)})
    return RequestError(
        503, "the catalog is unavailable; nothing was changed, retry", headers={"Retry-After": "1"}
    )


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload)


@app.put("/v1/items/<item_id>")
@tracer.capture_method
def put_item(item_id: str) -> Response:
    """Create or replace one item."""
    item_id = _item_id(item_id)
    raw = _body(MAX_ITEM_BODY_BYTES, 'an item like {"categories": ["Drama"], "attributes": {"price": 9.5}}')
    try:
        item = validate_item(raw, int(time.time() * 1000), item_id)
    except InvalidItem as error:
        raise RequestError(400, "invalid request", [f"body: {error}"]) from None
    try:
        catalog_items.put(item)
    except StoreUnavailable as error:
        raise _unavailable(error) from error
    metrics.add_metric(name="CatalogItemsWritten", unit=MetricUnit.Count, value=1)
    return _json(200, {"item": item.to_record()})


@app.post("/v1/items/batch")
@tracer.capture_method
def put_items() -> Response:
    """Create or replace up to 100 items; invalid ones are listed, the rest written."""
    body = _body(MAX_BATCH_BODY_BYTES, 'a JSON object like {"items": [...]}')
    if not isinstance(body, dict) or set(body) != {"items"} or not isinstance(body["items"], list):
        raise RequestError(400, "invalid request", ['body: must be an object with only an "items" array'])
    if not 1 <= len(body["items"]) <= MAX_BATCH_ITEMS:
        raise RequestError(400, "invalid request", [f"body.items: 1 to {MAX_BATCH_ITEMS} items"])
    now = int(time.time() * 1000)
    items, rejected = [], []
    seen: set[str] = set()
    for index, raw in enumerate(body["items"]):
        try:
            item = validate_item(raw, now)
        except InvalidItem as error:
            rejected.append({"index": index, "reason": str(error)})
            continue
        if item.item_id in seen:
            rejected.append({"index": index, "reason": "item_id repeats an earlier item in this request"})
            continue
        seen.add(item.item_id)
        items.append((index, item))
    try:
        unwritten = set(catalog_items.put_many([item for _, item in items]))
    except StoreUnavailable as error:
        raise _unavailable(error) from error
    for index, item in items:
        if item.item_id in unwritten:
            rejected.append({"index": index, "reason": "not stored (throttled); retry this item"})
    metrics.add_metric(name="CatalogItemsWritten", unit=MetricUnit.Count, value=len(items) - len(unwritten))
    return _json(
        200, {"written": len(items) - len(unwritten), "rejected": sorted(rejected, key=lambda r: r["index"])}
    )


@app.get("/v1/items/<item_id>")
@tracer.capture_method
def get_item(item_id: str) -> Response:
    item_id = _item_id(item_id)
    query(app.current_event.query_string_parameters, set(), {})
    try:
        item = catalog_items.get(item_id)
    except StoreUnavailable as error:
        raise _unavailable(error) from error
    if item is None:
        raise RequestError(404, "no such item")
    return _json(200, {"item": item.to_record()})


@app.delete("/v1/items/<item_id>")
@tracer.capture_method
def delete_item(item_id: str) -> Response:
    """Remove an item from every answer (idempotent)."""
    item_id = _item_id(item_id)
    query(app.current_event.query_string_parameters, set(), {})
    try:
        catalog_items.delete(item_id)
    except StoreUnavailable as error:
        raise _unavailable(error) from error
    metrics.add_metric(name="CatalogItemsDeleted", unit=MetricUnit.Count, value=1)
    return Response(status_code=204)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    """Lambda entry point (HTTP API payload format 2.0, AWS_IAM-authorized routes)."""
    return app.resolve(event, context)
