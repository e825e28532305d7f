"""Mapping rules of the local Kinesis poller that need no stream: record age, invalid responses, retries."""

from __future__ import annotations

from types import SimpleNamespace

from infra.local.aws import KinesisSource
from infra.local.poller import KinesisPoller
from tests.builders import stream_record

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/s"


def records(*ages_s: float) -> list[dict]:
    return [stream_record(str(n), age_s=age) for n, age in enumerate(ages_s, start=1)]


def poller(respond, **settings) -> tuple[KinesisPoller, list[list[str]], list[dict]]:
    invoked: list[list[str]] = []
    destination: list[dict] = []

    def invoke(event):
        sequences = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        invoked.append(sequences)
        return respond(sequences)

    function = SimpleNamespace(invoke=invoke, logical_id="Fn", arn="arn:fn")
    source = KinesisSource(
        function_id="Fn", stream_arn=STREAM_ARN, report_batch_item_failures=True, **settings
    )
    kinesis_poller = KinesisPoller(
        source, function, None, "us-east-1", destination.append, retry_backoff_s=0.001
    )
    return kinesis_poller, invoked, destination


def test_records_older_than_the_maximum_age_are_discarded_to_the_destination():
    kinesis_poller, invoked, destination = poller(lambda s: None, max_record_age_s=60)
    kinesis_poller._deliver("shard-0", records(120, 5))
    assert invoked == [["2"]]
    assert destination[0]["requestContext"]["condition"] == "RecordAgeExceeded"
    assert destination[0]["KinesisBatchInfo"]["startSequenceNumber"] == "1"


def test_an_unknown_item_identifier_fails_the_whole_batch_until_retries_run_out():
    kinesis_poller, invoked, destination = poller(
        lambda s: {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}, max_retries=2
    )
    kinesis_poller._deliver("shard-0", records(1, 1))
    assert invoked == [["1", "2"]] * 3  # first attempt + 2 retries, no bisect configured
    assert destination[0]["KinesisBatchInfo"]["batchSize"] == 2


def test_an_empty_failure_list_is_success():
    kinesis_poller, invoked, destination = poller(lambda s: {"batchItemFailures": []}, max_retries=0)
    kinesis_poller._deliver("shard-0", records(1, 1, 1))
    assert invoked == [["1", "2", "3"]] and destination == []


def test_partial_failures_resume_from_the_lowest_failed_record():
    failed_once: set[str] = set()

    def respond(sequences):
        failing = [s for s in sequences if s in ("2", "3") and s not in failed_once]
        failed_once.update(failing)
        return {"batchItemFailures": [{"itemIdentifier": s} for s in failing]}

    kinesis_poller, invoked, destination = poller(respond, max_retries=3)
    kinesis_poller._deliver("shard-0", records(1, 1, 1, 1))
    assert invoked == [["1", "2", "3", "4"], ["2", "3", "4"]]
    assert destination == []
