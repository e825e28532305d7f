"""Property-based fuzzing of every documented route with schemathesis: no 5xx, every answer as documented.

The real collect and recommend handlers answer behind a small WSGI front that does what API
Gateway does before them: it turns the HTTP request into an HTTP API (2.0) event, and a bearer
token into the JWT authorizer's claims (the token *is* the subject here; signature checks are
API Gateway's job and tested with the local stack). Schemathesis generates valid and invalid
requests from docs/openapi.json and checks the answers against it.
"""

from __future__ import annotations

import base64
import json
import re
from http import HTTPStatus
from typing import Any

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from moto import mock_aws
from schemathesis.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import ignored_auth, unsupported_method

from functions.collect import app as collect_app
from functions.recommend import app as recommend_app
from functions.recommend.openapi import DOCUMENT_PATH
from infra.local.http_api import build_http_event
from rtrec.stores.event_stream import EventStream
from rtrec.stores.user_state import UserStateStore
from tests.builders import FakeContext

SCHEMA = schemathesis.openapi.from_path(DOCUMENT_PATH)
ROUTES = {
    ("POST", "/v1/events"): collect_app,
    ("GET", "/v1/recommendations"): recommend_app,
    ("POST", "/v1/recommendations/rank"): recommend_app,
    ("GET", "/v1/interests"): recommend_app,
    ("DELETE", "/v1/me"): recommend_app,
}
SIMILAR = re.compile(r"^/v1/items/([^/]+)/similar$")


TOKEN, SUBJECT = "valid-token", "fuzz-user"
STATUSES: list[int] = []
GATEWAY_ANSWER = ("X-Answered-By", "api-gateway")


class AcceptingKinesis:
    """A stream that takes every record: the fuzzer is about input handling, not Kinesis."""

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"} for _ in Records]}


def api_gateway(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: what API Gateway and its JWT authorizer hand the Lambda, then the Lambda's answer."""
    method = environ["REQUEST_METHOD"]
    # WSGI hands the decoded path as latin-1 characters of its UTF-8 bytes.
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    headers = [(k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        headers.append(("content-type", environ["CONTENT_TYPE"]))
    module = ROUTES.get((method, path))
    route_key, path_parameters = f"{method} {path}", {}
    similar = SIMILAR.match(path)
    if method == "GET" and similar:
        module, route_key = recommend_app, "GET /v1/items/{item_id}/similar"
        path_parameters = {"item_id": similar.group(1)}
    if module is None:
        # API Gateway answers unrouted requests itself, before any function.
        start_response("404 Not Found", [("Content-Type", "application/json"), GATEWAY_ANSWER])
        return [b'{"message":"Not Found"}']
    if dict(headers).get("authorization") != f"Bearer {TOKEN}":
        # The JWT authorizer refuses a missing or invalid token before the function runs.
        start_response("401 Unauthorized", [("Content-Type", "application/json"), GATEWAY_ANSWER])
        return [b'{"message":"Unauthorized"}']
    claims = {"sub": SUBJECT}
    event = build_http_event(
        route_key=route_key,
        method=method,
        raw_path=path,
        raw_query=environ.get("QUERY_STRING", ""),
        headers=headers,
        body=body,
        path_parameters=path_parameters,
        claims=claims,
        source_ip="127.0.0.1",
        api_id="fuzz",
        host="localhost",
    )
    response = module.lambda_handler(event, FakeContext())
    status = response["statusCode"]
    payload = response.get("body") or ""
    data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
    start_response(f"{status} {HTTPStatus(status).phrase}", list((response.get("headers") or {}).items()))
    return [data]


@SCHEMA.auth()
class GatewayToken:
    """The token the JWT authorizer accepts; schemathesis leaves it out of cases that test its absence."""

    def get(self, case: Any, context: Any) -> str:
        return TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module", autouse=True)
def service():
    with mock_aws():
        table = boto3.resource("dynamodb").create_table(
            TableName="fuzz-user-state",
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        patch = pytest.MonkeyPatch()
        patch.setattr(recommend_app, "user_states", UserStateStore(table))
        patch.setattr(collect_app, "event_stream", EventStream(AcceptingKinesis(), "fuzz"))
        yield
        patch.undo()


@SCHEMA.parametrize()
# Derandomized: the same cases on every run, so CI fails on a finding, not on the draw of the day;
# widen max_examples locally (or drop derandomize) to search further.
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_route_answers_generated_requests_as_documented(case):
    response = case.call(app=api_gateway)
    STATUSES.append(response.status_code)
    # Unrouted methods are answered by API Gateway (404), not by these functions.
    # and tokens are checked by the JWT authorizer (the stub above), so neither is this code's to check.
    excluded = [unsupported_method, ignored_auth]
    if case.operation.path == "/v1/events":
        # By design one bad event among many is rejected alone (listed in the 202), not the request.
        excluded.append(negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and "x-answered-by" not in {k.lower() for k in response.headers}:
        body = json.loads(response.text)
        assert set(body) == {"message", "errors"} and isinstance(body["errors"], list), (
            response.headers,
            body,
        )


def test_the_fuzzer_reached_the_handlers():
    """Runs after the fuzzing above: most answers came from the functions, not the authorizer stand-in."""
    assert STATUSES, "the fuzzer ran no case"
    assert sum(200 <= s < 300 for s in STATUSES) > len(STATUSES) / 4, sorted(set(STATUSES))
