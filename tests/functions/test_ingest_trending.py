"""Kinesis → ingest → trending counters: only applied events count, once; a failure never fails a batch."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.ingest import app as ingest
from rtrec.ingest import BatchIngestor
from rtrec.stores.dead_letters import DeadLetterQueue
from rtrec.stores.errors import classify
from rtrec.stores.trending import TrendingTable
from rtrec.stores.user_state import UserStateStore
from rtrec.trending import TrendingConfig, TrendingRecorder
from tests.builders import FakeContext, create_trending_table, event_record, kinesis_record, sequence_numbers

NOW = 1_795_809_610_000
CONFIG = TrendingConfig(bucket_s=3600, half_life_s=3600, window_buckets=24, shards=3)
BUCKET = CONFIG.bucket_of(NOW)


class FlakyStates(UserStateStore):
    """The real state store, failing the writes of chosen users as throttled."""

    def __init__(self, table_name: str) -> None:
        super().__init__(client=boto3.client("dynamodb"), table_name=table_name)
        self.fail_users: set[str] = set()

    def put(self, state):
        if state.user_id in self.fail_users:
            error = ClientError({"Error": {"Code": "ThrottlingException", "Message": "later"}}, "PutItem")
            raise classify(error, "PutItem")
        super().put(state)


class Broken:
    """A trending table that is down."""

    def add(self, *args):
        error = ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")
        raise classify(error, "UpdateItem")


@pytest.fixture
def trending_counts(user_state_table, monkeypatch):
    """The ingest handler with a state store and a trending table in moto; returns counts of the bucket."""
    dynamodb = boto3.client("dynamodb")
    create_trending_table("test-trending")
    sqs = boto3.client("sqs")
    states = FlakyStates(user_state_table.name)
    ingestor = BatchIngestor(
        store=states,
        dead_letters=DeadLetterQueue(
            sqs, sqs.create_queue(QueueName="test-dlq")["QueueUrl"], sleep=lambda _: None
        ),
        catalog=None,
        sleep=lambda _: None,
        clock_ms=lambda: NOW,
    )
    table = TrendingTable(dynamodb, "test-trending", CONFIG.shards)
    monkeypatch.setattr(ingest, "ingestor", ingestor)
    monkeypatch.setattr(ingest, "trending", TrendingRecorder(table, CONFIG, clock_ms=lambda: NOW))

    def counts() -> dict[str, float]:
        return table.read([BUCKET])[BUCKET]

    counts.states = states
    return counts


def run(records) -> list[str]:
    response = ingest.lambda_handler({"Records": records}, FakeContext("IngestFunction"))
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def test_applied_events_are_counted_by_the_folds_weights(trending_counts):
    records = [
        event_record("u1", "e1", NOW - 1000, item="a", kind="view"),
        event_record("u1", "e2", NOW - 900, item="a", kind="purchase"),
        event_record("u2", "e3", NOW - 800, item="b", kind="rating", value=1),
        event_record("u2", "e4", NOW - 700, item="c", kind="skip"),
    ]
    assert run(records) == []
    assert trending_counts() == {"a": 6.0, "b": 2.0}


def test_a_redelivered_batch_and_a_resent_event_add_nothing(trending_counts):
    records = [event_record("u1", "e1", NOW - 1000, item="a"), event_record("u2", "e2", NOW - 900, item="b")]
    assert run(records) == []
    assert run(records) == []  # Kinesis delivers the same records again: they are duplicates
    resent = event_record("u1", "e1", NOW - 1000, item="a")  # a client re-send: new sequence number
    assert run([resent]) == []
    assert trending_counts() == {"a": 1.0, "b": 1.0}


def test_poison_and_unwritten_records_are_not_counted_until_they_are_applied(trending_counts):
    trending_counts.states.fail_users = {"u2"}
    poison = kinesis_record("u3", b"not json")
    later = event_record("u2", "e2", NOW - 900, item="b")
    records = [event_record("u1", "e1", NOW - 1000, item="a"), later, poison]
    assert run(records) == sequence_numbers([later])  # u2's write is throttled: retried
    assert trending_counts() == {"a": 1.0}
    trending_counts.states.fail_users = set()
    assert run(records[1:2]) == []  # the retry applies it, and only now it counts
    assert trending_counts() == {"a": 1.0, "b": 1.0}


def test_a_trending_failure_is_logged_and_counted_and_the_batch_still_succeeds(
    trending_counts, monkeypatch, capsys, caplog
):
    monkeypatch.setattr(ingest, "trending", TrendingRecorder(Broken(), CONFIG, clock_ms=lambda: NOW))
    records = [event_record("u1", "e1", NOW - 1000, item="a"), event_record("u2", "e2", NOW - 900, item="b")]
    assert run(records) == []
    out = capsys.readouterr().out
    metrics = json.loads(next(line for line in out.splitlines() if '"CloudWatchMetrics"' in line))
    assert metrics["TrendingWriteFailures"] == [2.0] and metrics["EventsApplied"] == [2.0]
    assert "trending counters not written" in caplog.text
    assert run(records) == []  # and nothing is retried: the states hold the events
    assert trending_counts() == {}


def test_a_bug_in_the_trending_writer_does_not_fail_the_batch(trending_counts, monkeypatch, caplog):
    class Exploding(TrendingRecorder):
        def record(self, *args, **kwargs):
            raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "trending", Exploding(Broken(), CONFIG))
    assert run([event_record("u1", "e1", NOW - 1000, item="a")]) == []
    assert any("RuntimeError: a bug" in str(getattr(r, "errors", "")) for r in caplog.records)


def test_without_a_table_nothing_is_counted(trending_counts, monkeypatch):
    monkeypatch.setattr(ingest, "trending", None)
    assert run([event_record("u1", "e1", NOW - 1000, item="a")]) == []
    assert trending_counts() == {}
