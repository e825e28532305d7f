"""POST /v1/events: validate a client's events and write the valid ones to Kinesis.

The user is the JWT ``sub`` claim (API Gateway's JWT authorizer has verified
the token); a body never chooses the user.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ServiceError, UnauthorizedError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from rtrec.events import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST, InvalidEvent, validate_client_event
from rtrec.stores.event_stream import EventStream, StreamRecord

logger = Logger()
tracer = Tracer()
metrics = Metrics()

_origins = [o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()]
cors = (
    CORSConfig(
        allow_origin=_origins[0],
        extra_origins=_origins[1:],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    if _origins
    else None
)
app = APIGatewayHttpResolver(cors=cors)

# Created on first use and reused by the container; tests replace it.
event_stream: EventStream | None = None


def _stream() -> EventStream:
    global event_stream
    if event_stream is None:
        event_stream = EventStream.from_env()
    return event_stream


def _user_id() -> str:
    authorizer = app.current_event.request_context.authorizer
    claims = authorizer.jwt_claim if authorizer is not None else None
    user_id = (claims or {}).get("sub")
    if not isinstance(user_id, str) or not user_id:
        raise UnauthorizedError("a valid token with a 'sub' claim is required")
    return user_id


def _events_from_body() -> list[Any]:
    raw = app.current_event.decoded_body or ""
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    if size > MAX_BODY_BYTES:
        raise ServiceError(413, f"body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw:
        raise BadRequestError('body is required: {"events": [...]}')
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequestError(f"body is not valid JSON: {error}") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise BadRequestError('body must be an object with an "events" array')
    events = body["events"]
    if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
        raise BadRequestError(f'"events" must hold 1 to {MAX_EVENTS_PER_REQUEST} events, not {len(events)}')
    return events


@app.post("/v1/events")
@tracer.capture_method
def post_events() -> Response:
    try:
        user_id = _user_id()
        raw_events = _events_from_body()
    except (UnauthorizedError, BadRequestError, ServiceError):
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        raise
    now_ms = int(time.time() * 1000)

    rejected: dict[int, str] = {}
    indices: list[int] = []
    records: list[StreamRecord] = []
    event_ids: set[str] = set()
    for index, raw in enumerate(raw_events):
        try:
            event = validate_client_event(raw, user_id, now_ms)
        except InvalidEvent as error:
            rejected[index] = str(error)
            continue
        if event.event_id in event_ids:
            rejected[index] = "event_id repeats an earlier event in this request"
            continue
        event_ids.add(event.event_id)
        indices.append(index)
        records.append(StreamRecord(partition_key=user_id, data=event.to_bytes()))

    accepted = 0
    if records:
        try:
            outcome = _stream().put(records)
        except (ClientError, BotoCoreError) as error:
            logger.exception("PutRecords failed", extra={"records": len(records)})
            metrics.add_metric(name="StreamUnavailable", unit=MetricUnit.Count, value=1)
            raise ServiceError(503, "the event stream is unavailable; retry later") from error
        accepted = len(outcome.written)
        for position, code in outcome.failed.items():
            rejected[indices[position]] = f"not stored ({code}); retry this event"

    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(rejected))
    if rejected:
        logger.info("events rejected", extra={"rejected": len(rejected), "accepted": accepted})
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body={
            "accepted": accepted,
            "rejected": [{"index": i, "reason": rejected[i]} for i in sorted(rejected)],
        },
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    """Lambda entry point (HTTP API payload format 2.0)."""
    return app.resolve(event, context)
