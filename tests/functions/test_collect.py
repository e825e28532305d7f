"""POST /v1/events: validation, the token's user, PutRecords with retries, error codes, CORS."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.collect import app as collect
from rtrec.events import parse_stream_record
from rtrec.stores.event_stream import EventStream
from tests.builders import FakeContext

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
FIXTURE = json.loads((EVENTS_DIR / "http-post-events.json").read_text())


def request(body, sub: str | None = "user-123", headers: dict | None = None) -> dict:
    event = copy.deepcopy(FIXTURE)
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if sub is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    if headers is not None:
        event["headers"] = headers
    return event


def invoke(event: dict) -> tuple[int, dict, dict]:
    response = collect.lambda_handler(event, FakeContext("CollectFunction", 256))
    body = json.loads(response["body"]) if response.get("body") else {}
    return response["statusCode"], body, response.get("headers", {})


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def stream(aws, monkeypatch):
    client = boto3.client("kinesis")
    client.create_stream(StreamName="test-events", ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName="test-events")
    monkeypatch.setattr(collect, "event_stream", EventStream(client, "test-events"))
    return client


def stream_records(client) -> list[dict]:
    shard = client.describe_stream(StreamName="test-events")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(
        StreamName="test-events", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return client.get_records(ShardIterator=iterator)["Records"]


def test_fixture_request_writes_valid_events_under_the_token_user(stream):
    status, body, _ = invoke(FIXTURE)
    assert status == 202
    assert body["accepted"] == 2
    assert body["rejected"] == [{"index": 2, "reason": body["rejected"][0]["reason"]}]
    assert "type must be one of" in body["rejected"][0]["reason"]
    records = stream_records(stream)
    assert [r["PartitionKey"] for r in records] == ["user-123", "user-123"]
    events = [parse_stream_record(r["Data"], now_ms()) for r in records]
    assert [(e.user_id, e.event_id, e.type) for e in events] == [
        ("user-123", "evt-0001", "view"),
        ("user-123", "evt-0002", "rating"),
    ]
    assert events[1].ts == 1_795_809_605_000 and events[1].value == 5.0


def test_user_id_in_the_body_is_refused_not_used(stream):
    status, body, _ = invoke(
        request(
            {
                "events": [
                    {
                        "event_id": "a",
                        "item_id": "1",
                        "type": "view",
                        "timestamp": now_ms(),
                        "user_id": "victim",
                    }
                ]
            }
        )
    )
    assert status == 202 and body["accepted"] == 0
    assert "taken from the token" in body["rejected"][0]["reason"]
    assert stream_records(stream) == []


def test_duplicate_event_id_within_a_request_is_rejected(stream):
    event = {"event_id": "a", "item_id": "1", "type": "view", "timestamp": now_ms()}
    status, body, _ = invoke(request({"events": [event, event]}))
    assert (status, body["accepted"]) == (202, 1)
    assert body["rejected"][0]["index"] == 1
    assert len(stream_records(stream)) == 1


def test_missing_token_claims_get_401(stream, capsys):
    status, body, _ = invoke(request({"events": []}, sub=None))
    assert status == 401 and "sub" in body["message"]
    assert '"RequestsRejected":[1.0]' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "body: required"),
        ("[]", '"events" array'),
        ({"events": "x"}, '"events" array'),
        ({"events": []}, "1 to 100"),
        ({"events": [{}] * 101}, "1 to 100"),
    ],
)
def test_malformed_bodies_get_400_with_a_reason(stream, body, message):
    status, response, _ = invoke(request(body))
    assert status == 400
    assert message in " ".join([response["message"], *response["errors"]])
    assert stream_records(stream) == []


def test_body_over_64_kb_gets_413(stream):
    padding = "x" * 70_000
    status, body, _ = invoke(request(json.dumps({"events": [], "padding": padding})))
    assert status == 413 and "limit" in body["message"]


class FlakyKinesis:
    """PutRecords that fails the records of chosen event ids on the first `flaky_calls` calls."""

    def __init__(self, fail_event_ids: set[str], flaky_calls: int) -> None:
        self.fail_event_ids, self.flaky_calls, self.calls = fail_event_ids, flaky_calls, []

    def put_records(self, StreamName, Records):
        self.calls.append([r["Data"] for r in Records])
        flaky = len(self.calls) <= self.flaky_calls
        return {
            "FailedRecordCount": 0,
            "Records": [
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
                if flaky and parse_stream_record(record["Data"], now_ms()).event_id in self.fail_event_ids
                else {"SequenceNumber": str(len(self.calls) * 100 + i), "ShardId": "shardId-0"}
                for i, record in enumerate(Records)
            ],
        }


def three_events() -> dict:
    return {
        "events": [
            {"event_id": f"e{i}", "item_id": "1", "type": "click", "timestamp": now_ms()} for i in range(3)
        ]
    }


def test_records_putrecords_reports_as_failed_are_retried_alone(monkeypatch):
    kinesis = FlakyKinesis(fail_event_ids={"e1"}, flaky_calls=1)
    monkeypatch.setattr(collect, "event_stream", EventStream(kinesis, "s", sleep=lambda _: None))
    status, body, _ = invoke(request(three_events()))
    assert (status, body) == (202, {"accepted": 3, "rejected": []})
    assert len(kinesis.calls) == 2
    assert [parse_stream_record(d, now_ms()).event_id for d in kinesis.calls[1]] == ["e1"]


def test_records_that_keep_failing_are_reported_per_index(monkeypatch):
    kinesis = FlakyKinesis(fail_event_ids={"e0", "e2"}, flaky_calls=99)
    monkeypatch.setattr(
        collect, "event_stream", EventStream(kinesis, "s", max_attempts=3, sleep=lambda _: None)
    )
    status, body, _ = invoke(request(three_events()))
    assert status == 202 and body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [0, 2]
    assert "ProvisionedThroughputExceededException" in body["rejected"][0]["reason"]
    assert [len(call) for call in kinesis.calls] == [3, 2, 2]


def test_unavailable_stream_gets_503_with_retry_after(aws, monkeypatch):
    class ThrottledKinesis:
        def put_records(self, **kwargs):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutRecords")

    monkeypatch.setattr(collect, "event_stream", EventStream(ThrottledKinesis(), "s", sleep=lambda _: None))
    status, body, headers = invoke(request(three_events()))
    assert status == 503 and "retry" in body["message"] and body["errors"] == []
    assert headers["Retry-After"] == "1"


def test_a_missing_stream_is_a_server_error_not_a_retry_hint(aws, monkeypatch):
    monkeypatch.setattr(collect, "event_stream", EventStream(boto3.client("kinesis"), "no-such-stream"))
    status, body, _ = invoke(request(three_events()))
    assert status == 500 and body == {"message": "internal error", "errors": []}


def test_cors_headers_only_for_allowed_origins(stream):
    allowed = {**FIXTURE["headers"], "origin": "https://app.example.com"}
    _, _, headers = invoke(request(three_events(), headers=allowed))
    assert headers.get("Access-Control-Allow-Origin") == "https://app.example.com"
    other = {**FIXTURE["headers"], "origin": "https://evil.example.net"}
    _, _, headers = invoke(request(three_events(), headers=other))
    assert "Access-Control-Allow-Origin" not in headers


def test_base64_encoded_body_is_decoded(stream):
    event = request(three_events())
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    status, body, _ = invoke(event)
    assert (status, body["accepted"]) == (202, 3)
