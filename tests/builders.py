"""Builders shared by the tests: Lambda contexts, Kinesis batches and HTTP API events.

One place builds each shape, from the fixtures in events/ (what `sam local invoke` would send).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/test-events"
SHARD_ID = "shardId-000000000000"


def fixture(name: str) -> dict[str, Any]:
    """A fixture from events/, freshly parsed (callers may change it)."""
    return json.loads((EVENTS_DIR / name).read_text())


@dataclass
class FakeContext:
    """The parts of a LambdaContext the handlers and Powertools read."""

    function_name: str = "TestFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:TestFunction"
    aws_request_id: str = "test-request"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# ---------- Kinesis ----------

_sequence = itertools.count(10**6)


def next_sequence_number() -> str:
    """A fresh Kinesis-like sequence number, increasing across the test session."""
    return f"4965700000000000000000{next(_sequence)}"


def kinesis_record(
    partition_key: str,
    data: bytes | str,
    sequence_number: str | None = None,
    shard_id: str = SHARD_ID,
) -> dict[str, Any]:
    """One record of a Lambda Kinesis event; ``data`` as bytes (encoded here) or as base64 text."""
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    sequence_number = sequence_number or next_sequence_number()
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": encoded,
            "approximateArrivalTimestamp": 1_795_809_606.5,
        },
        "eventSource": "aws:kinesis",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventSourceARN": STREAM_ARN,
    }


def event_record(
    user: str, event_id: str, ts: int, item: str = "50", kind: str = "view", **fields: Any
) -> dict:
    """A Kinesis record carrying one stream event of ``user`` (partition key = user unless given)."""
    partition_key = fields.pop("partition_key", user)
    payload = {"user_id": user, "event_id": event_id, "item_id": item, "type": kind, "ts": ts, **fields}
    return kinesis_record(partition_key, json.dumps(payload).encode())


def kinesis_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def sequence_numbers(records: list[dict[str, Any]]) -> list[str]:
    return [r["kinesis"]["sequenceNumber"] for r in records]


# ---------- HTTP API (payload format 2.0) ----------


def http_event(
    method: str,
    path: str,
    *,
    sub: str | None = "user-a",
    query: dict[str, str] | None = None,
    body: object = None,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
    origin: str | None = "https://app.example.com",
    base64_body: bytes | None = None,
) -> dict[str, Any]:
    """An HTTP API event as API Gateway sends it after the JWT authorizer accepted the token."""
    event = copy.deepcopy(fixture("http-get-recommendations.json"))
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event.pop("queryStringParameters", None)
    if query:
        event["queryStringParameters"] = dict(query)
    if sub is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    event["headers"].pop("origin", None)
    if origin:
        event["headers"]["origin"] = origin
    event.pop("body", None)
    event["isBase64Encoded"] = False
    if body is not None or raw_body is not None:
        event["headers"]["content-type"] = "application/json"
        event["body"] = raw_body if raw_body is not None else json.dumps(body)
    if base64_body is not None:
        event["body"] = base64.b64encode(base64_body).decode()
        event["isBase64Encoded"] = True
    if headers is not None:
        event["headers"].update(headers)
    return event
