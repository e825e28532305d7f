"""Shared test setup: fake AWS credentials, a moto account, and the environment the template sets."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO_ROOT / "layers" / "model" / "model"
EVENTS_DIR = REPO_ROOT / "events"

# Set before any handler module is imported: handlers read configuration at import time,
# exactly as they do in Lambda, where the template's Globals set these.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "USER_STATE_TABLE": "test-user-state",
        "CATALOG_TABLE": "test-catalog",
        "EVENT_STREAM_NAME": "test-events",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/test-dlq",
        "MODEL_DIR": str(MODEL_DIR),
        "POWERTOOLS_SERVICE_NAME": "rtrec",
        "POWERTOOLS_METRICS_NAMESPACE": "RtrecTest",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "ALLOWED_ORIGINS": "https://app.example.com",
        "USER_STATE_TTL_DAYS": "180",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # Tests call the handlers far faster than a person; the limits have their own tests.
        "PER_USER_EVENT_RATE": "0",
        "PER_USER_REQUEST_RATE": "0",
    }
)


@pytest.fixture
def aws():
    """Every AWS call inside the test goes to moto."""
    with mock_aws():
        yield


@pytest.fixture
def user_state_table(aws):
    """The UserState table as the template defines it (key user_id, on-demand)."""
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.create_table(
        TableName=os.environ["USER_STATE_TABLE"],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table


@pytest.fixture
def catalog_table(aws):
    """The catalog table as the template defines it (key item_id, the ByUpdate change-feed index)."""
    dynamodb = boto3.resource("dynamodb")
    table = dynamodb.create_table(
        TableName=os.environ["CATALOG_TABLE"],
        KeySchema=[{"AttributeName": "item_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "item_id", "AttributeType": "S"},
            {"AttributeName": "feed", "AttributeType": "S"},
            {"AttributeName": "updated_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByUpdate",
                "KeySchema": [
                    {"AttributeName": "feed", "KeyType": "HASH"},
                    {"AttributeName": "updated_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table
