"""Builders shared by the tests: Lambda contexts, Kinesis batches and HTTP API events, calls to a running API.

One place builds each shape, from the fixtures in events/ (what `sam local invoke` would send).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


def stream_record(
    sequence_number: str, *, age_s: float = 0.0, partition_key: str = "p", data: bytes = b"{}"
) -> dict[str, Any]:
    """A record as Kinesis GetRecords returns it through boto3 (what an event source mapping reads)."""
    return {
        "SequenceNumber": sequence_number,
        "PartitionKey": partition_key,
        "Data": data,
        "ApproximateArrivalTimestamp": datetime.now(UTC) - timedelta(seconds=age_s),
    }


# ---------- a running API (the local stack) ----------


def call_api(
    url: str, method: str = "GET", *, token: str | None = None, body: object = None, timeout_s: float = 10
) -> tuple[int, Any, dict[str, str]]:
    """One JSON request over HTTP: (status, parsed body or None, response headers); errors are answers."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """The first truthy value of ``predicate()``, polled until ``timeout_s``; AssertionError after that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")


def create_trending_table(name: str) -> Any:
    """The TrendingTable as the template defines it (pk + item_id, on demand), in moto."""
    import boto3

    table = boto3.resource("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "item_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "item_id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table
