"""scripts/purge_user.py against moto: the state item, the user's dead letters (and nobody else's), the
Cognito account, a dry run, and a second run that finds nothing."""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from rtrec.stores.dead_letters import DeadLetter
from scripts import purge_user

ALICE, BOB = "sub-alice", "sub-bob"


def _letter(partition_key: str, record: dict) -> str:
    data = base64.b64encode(json.dumps(record).encode()).decode()
    return DeadLetter(
        reason="schema: item_id missing",
        source="IngestFunction",
        sequence_number="1",
        partition_key=partition_key,
        data_base64=data,
        event_source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/events",
    ).to_body()


LAMBDA_ON_FAILURE = json.dumps(  # the mapping's own record: ranges, no user data
    {
        "requestContext": {"condition": "RetryAttemptsExhausted"},
        "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "1", "batchSize": 3},
    }
)


@pytest.fixture(autouse=True)
def _no_long_polling(monkeypatch):
    monkeypatch.setattr(purge_user, "EMPTY_POLL_WAIT_S", 0)


@pytest.fixture
def stack(aws):
    """The stack's table, queue and pool, with Alice's and Bob's data, and a stack whose outputs name them."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="rtrec-UserState",
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for user in (ALICE, BOB):
        dynamodb.put_item(TableName="rtrec-UserState", Item={"user_id": {"S": user}, "version": {"N": "1"}})
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="rtrec-dlq")["QueueUrl"]
    bodies = [
        _letter(ALICE, {"user_id": ALICE, "event_id": "e-1"}),
        _letter(ALICE, {"user_id": ALICE, "event_id": "e-2"}),
        _letter(BOB, {"user_id": BOB, "event_id": "e-3"}),
        _letter("other-key", {"user_id": ALICE}),  # the record names her though the key does not
        LAMBDA_ON_FAILURE,
        "not json at all",
    ]
    # More than one receive's worth, so the scan has to page.
    bodies += [_letter(BOB, {"user_id": BOB, "event_id": f"b-{i}"}) for i in range(12)]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    cognito = boto3.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="rtrec", UsernameAttributes=["email"])["UserPool"]["Id"]
    subs = {}
    for email in ("alice@example.com", "bob@example.com"):
        user = cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}],
            MessageAction="SUPPRESS",
        )["User"]
        subs[email] = next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
    outputs = {
        "UserStateTableName": "rtrec-UserState",
        "DeadLetterQueueUrl": queue_url,
        "UserPoolId": pool_id,
    }
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="rtrec", TemplateBody=json.dumps(template))
    return {"queue_url": queue_url, "pool_id": pool_id, "subs": subs, "count": len(bodies)}


def _queue_bodies(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        )
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]


def _state(user: str) -> dict | None:
    return (
        boto3.client("dynamodb")
        .get_item(TableName="rtrec-UserState", Key={"user_id": {"S": user}})
        .get("Item")
    )


def _run(*argv: str, capsys) -> dict:
    assert purge_user.main(list(argv), boto3.session.Session()) == 0
    return json.loads(capsys.readouterr().out)


def test_purge_deletes_the_users_state_and_dead_letters_only(stack, capsys):
    report = _run(ALICE, capsys=capsys)
    assert report["state_item_deleted"] is True
    assert report["dead_letters_deleted"] == 3
    assert report["dead_letters_kept"] == stack["count"] - 3
    assert report["cognito_user_deleted"] is None
    assert any("Kinesis" in line for line in report["not_deleted"])
    assert _state(ALICE) is None and _state(BOB) is not None
    # Everything else is still there, and visible again at once (the scan hid it only while it ran).
    remaining = _queue_bodies(stack["queue_url"])
    assert len(remaining) == stack["count"] - 3
    assert LAMBDA_ON_FAILURE in remaining and "not json at all" in remaining
    assert not any(purge_user.is_about(body, ALICE) for body in remaining)
    assert sum(purge_user.is_about(body, BOB) for body in remaining) == 13


def test_a_second_run_finds_nothing(stack, capsys):
    _run(ALICE, capsys=capsys)
    again = _run(ALICE, capsys=capsys)
    assert again["state_item_deleted"] is False and again["dead_letters_deleted"] == 0


def test_dry_run_reports_and_keeps_everything(stack, capsys):
    report = _run(ALICE, "--dry-run", capsys=capsys)
    assert report["dry_run"] is True
    assert report["state_item_deleted"] is True and report["dead_letters_deleted"] == 3
    assert _state(ALICE) is not None
    assert len(_queue_bodies(stack["queue_url"])) == stack["count"]


def test_the_cognito_account_goes_too_when_asked(stack, capsys):
    alice = stack["subs"]["alice@example.com"]
    report = _run(alice, "--delete-cognito-user", capsys=capsys)
    assert report["cognito_user_deleted"] is True
    users = boto3.client("cognito-idp").list_users(UserPoolId=stack["pool_id"])["Users"]
    remaining = {a["Value"] for u in users for a in u["Attributes"] if a["Name"] == "sub"}
    assert remaining == {stack["subs"]["bob@example.com"]}


def test_is_about_reads_the_partition_key_or_the_record():
    assert purge_user.is_about(_letter(ALICE, {"user_id": "x"}), ALICE)
    assert purge_user.is_about(_letter("other", {"user_id": ALICE}), ALICE)
    assert not purge_user.is_about(_letter(BOB, {"user_id": BOB}), ALICE)
    assert not purge_user.is_about(LAMBDA_ON_FAILURE, ALICE)
    assert not purge_user.is_about("[1, 2]", ALICE)
