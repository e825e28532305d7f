"""POST /v1/events: validate a client's events and write the valid ones to Kinesis.

Thin handler: parse (``rtrec.http``), validate each event (``rtrec.events``), write
(``rtrec.stores.event_stream``), shape the 202. The user is the JWT ``sub`` claim (API Gateway's
JWT authorizer has verified the token); a body never chooses the user.

Status codes: 202 when the request was understood, listing every event that was not stored and
why ("retry this event" for those Kinesis did not take); 503 only when nothing was written and
every event can be retried; 4xx for a request that can never succeed.
"""

from __future__ import annotations

import time

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtrec import api_requests
from rtrec.events import InvalidEvent, validate_client_event
from rtrec.http import (
    NO_STORE,
    RequestError,
    caller_id,
    claims_of,
    install_error_handlers,
    too_many,
)
from rtrec.limits import PerUserLimiter
from rtrec.settings import CollectSettings
from rtrec.stores.clients import aws_client
from rtrec.stores.errors import StoreUnavailable
from rtrec.stores.event_stream import EventStream, StreamRecord

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = CollectSettings.from_env()
event_stream = EventStream(aws_client("kinesis", settings.kinesis), settings.stream_name)
per_user = PerUserLimiter(settings.per_user_events)
_origins = settings.allowed_origins
app = APIGatewayHttpResolver(
    cors=CORSConfig(
        allow_origin=_origins[0],
        extra_origins=list(_origins[1:]),
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    if _origins
    else None
)
install_error_handlers(app, logger)
# Kinesis codes that mean "this record, later": the client is told to send the event again.
RETRY_AFTER = {"Retry-After": "1"}
_RETRYABLE_CODES = {"ProvisionedThroughputExceededException", "InternalFailure", "ServiceUnavailable"}


@app.post("/v1/events")
@tracer.capture_method
def post_events() -> Response:
    try:
        user_id = caller_id(claims_of(app.current_event))
        request = app.current_event
        raw_events = api_requests.events_body(request.headers, request.body, request.is_base64_encoded)
        too_many(per_user.take(user_id, len(raw_events)))
    except RequestError:
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
            outcome = event_stream.put(records)
        except StoreUnavailable as error:
            logger.warning(
                "PutRecords failed; nothing written", extra={"records": len(records), "error": str(error)}
            )
            metrics.add_metric(name="StreamUnavailable", unit=MetricUnit.Count, value=1)
            raise RequestError(
                503,
                "the event stream is unavailable; nothing was stored, retry the request",
                headers=RETRY_AFTER,
            ) from error
        accepted = len(outcome.written)
        if not accepted and all(code in _RETRYABLE_CODES for code in outcome.failed.values()):
            metrics.add_metric(name="StreamUnavailable", unit=MetricUnit.Count, value=1)
            raise RequestError(
                503,
                "the event stream is throttled; nothing was stored, retry the request",
                headers=RETRY_AFTER,
            )
        for position, code in outcome.failed.items():
            rejected[indices[position]] = f"not stored ({code}); retry this event"

    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=accepted)
    metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(rejected))
    if rejected:
        logger.info("events rejected", extra={"rejected": len(rejected), "accepted": accepted})
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        headers=dict(NO_STORE),
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
