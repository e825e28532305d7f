"""Kinesis → ingest → DynamoDB: grouping, ordering, exactly-once effect, poison records, partial failures."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.exceptions import ClientError

from dataio.movielens import GENRES
from functions.ingest import app as ingest
from rtrec.features import Catalog
from rtrec.ingest import BatchIngestor, kinesis_records
from rtrec.state import event_key
from rtrec.stores.dead_letters import DeadLetterQueue
from rtrec.stores.errors import classify
from rtrec.stores.user_state import UserStateStore, VersionConflict
from tests.builders import EVENTS_DIR, FakeContext, event_record, fixture, kinesis_record, sequence_numbers

BATCH = fixture("kinesis-batch.json")
NOW = 1_795_809_610_000
CATALOG = Catalog(
    item_ids=["1", "50", "181"],
    categories=GENRES,
    category_ids=[[3, 4, 5], [1, 2, 15], [1, 2, 14]],
    popularity=[1, 2, 3],
)


class CountingStore(UserStateStore):
    """The real store on a low-level client (as the Lambda builds it), counting writes and able to
    fail chosen users."""

    def __init__(self, table, fail_users=(), error_code="ProvisionedThroughputExceededException"):
        super().__init__(client=boto3.client("dynamodb"), table_name=table.name)
        self.puts: list[str] = []
        self.fail_users, self.error_code = set(fail_users), error_code

    def put(self, state):
        self.puts.append(state.user_id)
        if state.user_id in self.fail_users:
            error = ClientError({"Error": {"Code": self.error_code, "Message": "try later"}}, "PutItem")
            raise classify(error, "PutItem")
        super().put(state)


@pytest.fixture
def env(user_state_table, monkeypatch):
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="test-dlq")["QueueUrl"]
    ingestor = BatchIngestor(
        store=CountingStore(user_state_table),
        dead_letters=DeadLetterQueue(sqs, queue_url, sleep=lambda _: None),
        catalog=CATALOG,
        sleep=lambda _: None,
        clock_ms=lambda: NOW,
    )
    monkeypatch.setattr(ingest, "ingestor", ingestor)
    ingestor.sqs, ingestor.queue_url = sqs, queue_url
    return ingestor


def run(records, remaining_ms: int = 60_000) -> list[str]:
    response = ingest.lambda_handler(
        {"Records": records}, FakeContext("IngestFunction", remaining_ms=remaining_ms)
    )
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def dead_letters(env) -> list[dict]:
    letters = []
    while True:
        messages = env.sqs.receive_message(QueueUrl=env.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return letters
        letters += [json.loads(m["Body"]) for m in messages]
        env.sqs.delete_message_batch(
            QueueUrl=env.queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
        )


def record(user, event_id, item="50", kind="view", ts=NOW - 1000, partition_key=None, **extra) -> dict:
    return event_record(user, event_id, ts, item, kind, partition_key=partition_key or user, **extra)


def raw_record(partition_key, data: bytes | str) -> dict:
    return kinesis_record(partition_key, data)


def test_fixture_batch_applies_valid_events_and_dead_letters_poison(env, capsys):
    assert run(BATCH["Records"]) == []

    alice = env.store.get("user-123")
    assert alice.version == 1
    assert [(i.event_id, i.type) for i in alice.recent] == [("evt-0001", "view"), ("evt-0002", "rating")]
    assert alice.counts == {"view": 1, "rating": 1}  # the redelivered evt-0001 counted once
    assert set(alice.interests) == {"Action", "Adventure", "Sci-Fi"}
    bob = env.store.get("user-456")
    assert [i.item_id for i in bob.recent] == ["181", "unknown-item"]  # an unknown item still enters
    assert bob.counts == {"click": 1, "purchase": 1}
    assert env.store.get("user-789") is None
    assert sorted(env.store.puts) == ["user-123", "user-456"]  # one write per user

    letters = dead_letters(env)
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(reasons) == 3
    assert any("base64" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    assert any("type must be one of" in r for r in reasons)
    assert {letter["partition_key"] for letter in letters} == {"user-456", "user-789"}

    emitted = capsys.readouterr().out
    metrics = json.loads(next(line for line in emitted.splitlines() if '"CloudWatchMetrics"' in line))
    assert metrics["EventsApplied"] == [4.0]
    assert metrics["DuplicateEvents"] == [1.0]
    assert metrics["PoisonRecords"] == [3.0]
    assert metrics["UsersWritten"] == [2.0]
    assert metrics["FreshnessLag"] == [NOW - 1_795_809_600_000]


def test_redelivered_batch_with_new_sequence_numbers_changes_nothing(env):
    events = [record("u1", f"e{i}", ts=NOW - 100 + i) for i in range(5)]
    assert run(events) == []
    before = env.store.get("u1").to_item()
    redelivered = [record("u1", f"e{i}", ts=NOW - 100 + i) for i in range(5)]
    assert run(redelivered) == []
    assert env.store.get("u1").to_item() == before
    assert env.store.puts == ["u1"]  # nothing new: no second write


def test_late_event_never_overwrites_newer_last_fields(env):
    run([record("u1", "new", item="1", ts=NOW - 10)])
    run([record("u1", "old", item="181", ts=NOW - 5000)])
    state = env.store.get("u1")
    assert (state.last_event_at, state.last_event_id) == (NOW - 10, "new")
    assert [i.event_id for i in state.recent] == ["old", "new"]
    assert state.version == 2


def test_one_conditional_write_per_user_per_batch(env):
    records = [record(f"user-{n % 3}", f"e{n}", ts=NOW - 1000 + n) for n in range(30)]
    assert run(records) == []
    assert sorted(env.store.puts) == ["user-0", "user-1", "user-2"]
    assert all(env.store.get(f"user-{u}").counts == {"view": 10} for u in range(3))


def test_records_are_applied_in_stream_order_per_user(env):
    # Same timestamp: the recent list and the de-duplication log both keep arrival order.
    records = [record("u1", eid, ts=NOW - 1) for eid in ["c", "a", "b"]]
    assert run(records) == []
    state = env.store.get("u1")
    assert state.event_keys.tolist() == [event_key(e) for e in ["c", "a", "b"]]
    assert [i.event_id for i in state.recent] == ["c", "a", "b"]  # ties keep arrival order, as training does


def test_transient_failure_reports_only_that_users_records(env):
    env.store.fail_users = {"bad"}
    records = [
        record("good", "g1"),
        record("bad", "b1"),
        record("good", "g2"),
        record("bad", "b2"),
    ]
    failures = run(records)
    assert failures == sequence_numbers([records[1], records[3]])
    assert env.store.get("good").counts == {"view": 2}
    assert env.store.get("bad") is None
    # The stream retries from the first failure; the good user's redelivered event is a duplicate.
    env.store.fail_users = set()
    assert run(records[1:]) == []
    assert env.store.get("bad").counts == {"view": 2}
    assert env.store.get("good").counts == {"view": 2}


def test_batch_where_everything_fails_reports_every_record(env):
    env.store.fail_users = {"u1", "u2"}
    records = [record("u1", "a"), record("u2", "b"), record("u1", "c")]
    assert run(records) == sequence_numbers(records)


def test_optimistic_lock_conflict_rereads_and_merges(env, user_state_table):
    concurrent = [record("u1", "theirs", item="1", ts=NOW - 50)]
    real_put = env.store.put
    calls = []

    def put_after_a_concurrent_writer(state):
        calls.append(state.version)
        if len(calls) == 1:  # another container writes between our read and our write
            BatchIngestor(
                UserStateStore.from_client(boto3.client("dynamodb"), user_state_table.name),
                env.dead_letters,
                CATALOG,
                clock_ms=lambda: NOW,
            ).process(kinesis_records({"Records": concurrent}))
        real_put(state)

    env.store.put = put_after_a_concurrent_writer
    assert run([record("u1", "ours", item="50", ts=NOW - 40)]) == []
    state = env.store.get("u1")
    assert calls == [1, 2]
    assert state.version == 2
    assert [i.event_id for i in state.recent] == ["theirs", "ours"]


def test_lock_lost_on_every_attempt_is_reported_for_retry(env):
    def always_conflict(state):
        raise VersionConflict(state.user_id)

    env.store.put = always_conflict
    records = [record("u1", "a"), record("u2", "b")]
    env.store.fail_users = set()
    assert run(records) == sequence_numbers(records)


def test_poison_record_that_cannot_be_dead_lettered_blocks_the_users_later_records(env):
    class BrokenQueue:
        def send(self, letters):
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch"
            )

    env.dead_letters = BrokenQueue()
    records = [
        record("u1", "before"),
        raw_record("u1", b"{broken"),
        record("u1", "after"),
        record("u2", "other"),
    ]
    assert run(records) == sequence_numbers(records[1:3])
    assert [i.event_id for i in env.store.get("u1").recent] == ["before"]
    assert env.store.get("u2").counts == {"view": 1}


def test_partition_key_must_be_the_user(env):
    assert run([record("u1", "a", partition_key="u2")]) == []
    assert env.store.get("u1") is None
    assert "partition key" in dead_letters(env)[0]["reason"]


def test_dead_letter_keeps_the_original_payload(env):
    bad = raw_record("u9", b'{"user_id": "u9"}')
    run([bad])
    letter = dead_letters(env)[0]
    assert letter["data_base64"] == bad["kinesis"]["data"]
    assert letter["sequence_number"] == bad["kinesis"]["sequenceNumber"]
    assert "event_id is required" in letter["reason"]


def test_empty_batch_is_a_success(env):
    assert run([]) == []


def test_catalog_is_read_from_the_model_dir(tmp_path):
    assert ingest.load_catalog(str(tmp_path)) is None
    (tmp_path / "items.json").write_text(json.dumps(CATALOG.to_json()))
    assert ingest.load_catalog(str(tmp_path)).categories_of("50") == ["Action", "Adventure", "Sci-Fi"]


def test_what_collect_writes_is_what_ingest_applies(env, monkeypatch):
    """The stream record contract end to end: POST /v1/events -> Kinesis (moto) -> ingest -> DynamoDB."""
    from functions.collect import app as collect
    from rtrec.stores.event_stream import EventStream

    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="e2e", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="e2e")
    monkeypatch.setattr(collect, "event_stream", EventStream(kinesis, "e2e"))
    request = json.loads((EVENTS_DIR / "http-post-events.json").read_text())
    response = collect.lambda_handler(request, FakeContext("CollectFunction"))
    assert json.loads(response["body"])["accepted"] == 2

    shard = kinesis.describe_stream(StreamName="e2e")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="e2e", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = [
        {
            "kinesis": {
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": r["SequenceNumber"],
                "data": base64.b64encode(r["Data"]).decode(),
            },
            "eventID": f"{shard}:{r['SequenceNumber']}",
        }
        for r in kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    ]
    assert run(records) == []
    state = env.store.get("user-123")
    assert [(i.event_id, i.type, i.value) for i in state.recent] == [
        ("evt-0001", "view", None),
        ("evt-0002", "rating", 5.0),
    ]
    assert dead_letters(env) == []


def test_users_are_read_with_one_batch_call_and_singly_if_it_fails(env):
    calls = []
    real_get_many = env.store.get_many

    def counting_get_many(user_ids, consistent=True):
        calls.append(sorted(user_ids))
        if len(calls) == 2:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "BatchGetItem")
        return real_get_many(user_ids, consistent)

    env.store.get_many = counting_get_many
    assert run([record("a", "1"), record("b", "2"), record("a", "3")]) == []
    assert calls == [["a", "b"]]
    assert run([record("a", "4"), record("b", "5")]) == []  # the batch read fails: single reads instead
    assert env.store.get("a").counts == {"view": 3} and env.store.get("b").counts == {"view": 2}
    assert env.store.get("a").version == 2
