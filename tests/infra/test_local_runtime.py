"""The local stack's generic machinery, on a small template with stand-in handlers.

These pin down the behaviour the real service relies on locally: resources made by moto's
CloudFormation from the template, the functions' environments, routes and the JWT authorizer,
payload-2.0 events, and the Kinesis mapping semantics (partial-failure checkpointing, bisect on
error, retries, on-failure destination).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from infra.local.auth import LocalIdentityProvider
from infra.local.stack import LocalStack
from infra.local.template import Template
from tests.builders import call_api, wait_for

TEMPLATE = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Environment:
      Variables:
        TABLE_NAME: !Ref Table
        STREAM_NAME: !Ref Stream
        QUEUE_URL: !Ref Dlq
        LEVEL: global
        OVERRIDDEN: template
Resources:
  UserPool:
    Type: AWS::Cognito::UserPool
  UserPoolClient:
    Type: AWS::Cognito::UserPoolClient
    Properties:
      UserPoolId: !Ref UserPool
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            IdentitySource: $request.header.Authorization
            JwtConfiguration:
              issuer: !Sub https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}
              audience:
                - !Ref UserPoolClient
  Stream:
    Type: AWS::Kinesis::Stream
    Properties:
      ShardCount: 1
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  Echo:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Handler: app.handler
      Environment:
        Variables:
          LEVEL: echo
          ECHO_ONLY: "yes"
      Events:
        Get:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: '/v1/echo/{name}', Method: GET}
        Put:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /v1/put, Method: POST}
        Health:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Path: /health, Method: GET, Auth: {Authorizer: NONE}}
  Sink:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: sink/
      Handler: app.handler
      Events:
        Stream:
          Type: Kinesis
          Properties:
            Stream: !GetAtt Stream.Arn
            StartingPosition: TRIM_HORIZON
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 0
            FunctionResponseTypes: [ReportBatchItemFailures]
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 2
            DestinationConfig:
              OnFailure:
                Type: SQS
                Destination: !GetAtt Dlq.Arn
"""

ECHO = """
import json, os, boto3
kinesis = boto3.client("kinesis")
AT_IMPORT = {name: os.environ.get(name) for name in ("LEVEL", "ECHO_ONLY", "OVERRIDDEN", "TABLE_NAME")}

def handler(event, context):
    if event["routeKey"] == "POST /v1/put":
        body = json.loads(event["body"])
        kinesis.put_record(StreamName=os.environ["STREAM_NAME"], PartitionKey="p", Data=json.dumps(body))
        return {"statusCode": 202, "headers": {"content-type": "application/json"}, "body": "{}"}
    jwt = event["requestContext"].get("authorizer", {}).get("jwt", {})
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-function": context.function_name},
        "body": json.dumps({
            "claims": jwt.get("claims"),
            "path": event.get("pathParameters"),
            "query": event.get("queryStringParameters"),
            "table": os.environ["TABLE_NAME"],
            "at_import": AT_IMPORT,
        }),
    }
"""

# Applies each record by adding 1 to a counter per record id, so a test sees how often
# each record was applied. "crash" raises (a function error); "flaky" is reported as a
# batch item failure the first time it is seen.
SINK = """
import base64, json, os, boto3
table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
AT_IMPORT = {name: os.environ.get(name) for name in ("LEVEL", "ECHO_ONLY", "OVERRIDDEN")}
seen_flaky = set()

def handler(event, context):
    records = [(r["kinesis"]["sequenceNumber"], json.loads(base64.b64decode(r["kinesis"]["data"])))
               for r in event["Records"]]
    if any(body["kind"] == "crash" for _, body in records):
        raise RuntimeError("poison in batch")
    failures = []
    for sequence, body in records:
        if failures:
            failures.append({"itemIdentifier": sequence})
            continue
        if body["kind"] == "flaky" and body["id"] not in seen_flaky:
            seen_flaky.add(body["id"])
            failures.append({"itemIdentifier": sequence})
            continue
        table.update_item(Key={"id": body["id"]}, UpdateExpression="ADD applied :one",
                          ExpressionAttributeValues={":one": 1})
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def template_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stack")
    (root / "template.yaml").write_text(TEMPLATE)
    for name, code in (("echo", ECHO), ("sink", SINK)):
        (root / name).mkdir()
        (root / name / "app.py").write_text(textwrap.dedent(code))
    return root / "template.yaml"


@pytest.fixture(scope="module")
def stack(template_path):
    with LocalStack(template_path, poll_interval_s=0.05, environment={"OVERRIDDEN": "caller"}) as running:
        yield running


def call(stack: LocalStack, method: str, path: str, token: str | None = None, body: dict | None = None):
    return call_api(stack.api_url + path, method, token=token, body=body)


def test_template_settings_are_read_not_restated(stack, template_path):
    (poller,) = stack.pollers  # the mapping moto's CloudFormation created, settings as Lambda reports them
    source = poller.source
    assert (source.function_id, source.batch_size, source.max_retries) == ("Sink", 10, 2)
    assert source.starting_position == "TRIM_HORIZON"
    assert source.report_batch_item_failures and source.bisect_on_error
    assert source.stream_name == stack.resource("Stream")
    routes = {r.route_key: r.authorizer for r in Template(template_path).http_routes()}
    assert routes == {"GET /v1/echo/{name}": "Jwt", "POST /v1/put": "Jwt", "GET /health": None}


def test_one_environment_rule_globals_then_function_then_caller(stack):
    echo, sink = stack.functions["Echo"], stack.functions["Sink"]
    assert (echo.environment["LEVEL"], echo.environment["ECHO_ONLY"]) == ("echo", "yes")
    assert sink.environment["LEVEL"] == "global" and "ECHO_ONLY" not in sink.environment
    assert echo.environment["OVERRIDDEN"] == sink.environment["OVERRIDDEN"] == "caller"
    # Each handler module was imported with exactly its own environment, as in its own container.
    assert {
        "LEVEL": "echo",
        "ECHO_ONLY": "yes",
        "OVERRIDDEN": "caller",
        "TABLE_NAME": stack.resource("Table"),
    } == echo.module.AT_IMPORT
    assert sink.module.AT_IMPORT == {"LEVEL": "global", "ECHO_ONLY": None, "OVERRIDDEN": "caller"}


def test_authorized_request_gets_cognito_shaped_claims_as_strings(stack):
    status, body, headers = call(stack, "GET", "/v1/echo/bob?k=10&tag=a&tag=b", stack.token("user-1"))
    assert status == 200
    claims = body["claims"]
    assert claims["sub"] == "user-1" and claims["token_use"] == "access"
    assert claims["client_id"] in stack.identity_provider().audiences
    assert claims["iss"].startswith("https://cognito-idp.us-east-1.amazonaws.com/")
    assert all(isinstance(v, str) for v in claims.values())
    assert body["path"] == {"name": "bob"}
    assert body["query"] == {"k": "10", "tag": "a,b"}
    assert body["table"] == stack.resource("Table")
    assert headers["x-function"] == stack.functions["Echo"].name  # the name CloudFormation gave it


@pytest.mark.parametrize("case", ["missing", "garbage", "expired", "foreign key", "wrong audience"])
def test_requests_without_a_valid_token_get_401_and_never_reach_the_handler(stack, case):
    provider = stack.identity_provider()
    same_key_other_client = LocalIdentityProvider(provider.issuer, ["other"], provider.private_key_pem)
    token = {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": provider.mint("user-1", now=time.time() - 7200),
        "foreign key": LocalIdentityProvider(provider.issuer, provider.audiences).mint("user-1"),
        "wrong audience": same_key_other_client.mint("user-1"),
    }[case]
    status, body, _ = call(stack, "GET", "/v1/echo/bob", token)
    assert (status, body) == (401, {"message": "Unauthorized"})


def test_open_route_and_unknown_route(stack):
    assert call(stack, "GET", "/health")[0] == 200
    assert call(stack, "GET", "/nope", stack.token("u"))[0] == 404


def test_stream_mapping_checkpoints_bisects_retries_and_sends_poison_to_the_destination(stack):
    clients = stack.clients("kinesis", "dynamodb", "sqs")
    kinds = [("ok-1", "ok"), ("flaky-1", "flaky"), ("ok-2", "ok"), ("poison-1", "crash"), ("ok-3", "ok")]
    response = clients["kinesis"].put_records(
        StreamName=stack.resource("Stream"),
        Records=[{"PartitionKey": "p", "Data": json.dumps({"id": i, "kind": k}).encode()} for i, k in kinds],
    )
    poison_sequence = response["Records"][3]["SequenceNumber"]
    queue_url = stack.resource("Dlq")
    message = wait_for(
        lambda: clients["sqs"].receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages")
    )[0]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3  # first try + MaximumRetryAttempts
    assert record["KinesisBatchInfo"]["batchSize"] == 1  # bisected down to the poison record
    assert record["KinesisBatchInfo"]["startSequenceNumber"] == poison_sequence
    assert record["KinesisBatchInfo"]["streamArn"] == stack.pollers[0].source.stream_arn

    assert stack.wait_for_stream(20)
    items = clients["dynamodb"].scan(TableName=stack.resource("Table"))["Items"]
    applied = {item["id"]["S"]: int(item["applied"]["N"]) for item in items}
    # Every good record applied exactly once: the checkpoint after a partial failure
    # and the bisection never re-apply a record that already succeeded.
    assert applied == {"ok-1": 1, "flaky-1": 1, "ok-2": 1, "ok-3": 1}


def test_handler_clients_talk_to_the_local_aws(stack):
    status, _, _ = call(stack, "POST", "/v1/put", stack.token("u"), {"id": "via-api", "kind": "ok"})
    assert status == 202
    table = stack.resource("Table")
    dynamodb = stack.clients("dynamodb")["dynamodb"]
    wait_for(lambda: dynamodb.get_item(TableName=table, Key={"id": {"S": "via-api"}}).get("Item"))
