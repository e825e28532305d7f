"""A local Kinesis event-source mapping: polls each shard and invokes the function with batches.

moto creates the mapping from the template but never polls it. This follows the mapping's
settings, as moto's Lambda reports them, the way Lambda applies them:

- BatchSize and MaximumBatchingWindowInSeconds decide when a batch is handed over.
- With ReportBatchItemFailures, a response's batchItemFailures checkpoint the shard
  just before the lowest failed sequence number and the rest of the batch is retried;
  an invalid response counts as a whole-batch failure.
- A function error (exception) with BisectBatchOnFunctionError splits the batch in two
  and retries each half separately; bisecting does not use up retries.
- After MaximumRetryAttempts retries, or for records older than
  MaximumRecordAgeInSeconds, a description of the discarded records (Lambda's
  on-failure invocation record, with KinesisBatchInfo) goes to the OnFailure
  destination and the shard moves on.

A shard is processed in order by one thread (ParallelizationFactor is treated as 1,
which keeps the same per-key ordering guarantee).

With ``archive`` given, every batch read from the stream is handed to it as it is read, before and
independently of the function (the template's Firehose is a stream consumer of its own, which moto
does not run: see ``infra.local.archive``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.local.aws import KinesisSource
from infra.local.runtime import LocalFunction

log = logging.getLogger("local.poller")

_MAX_BACKOFF_S = 2.0


def kinesis_event_record(
    *,
    shard_id: str,
    sequence_number: str,
    partition_key: str,
    data: bytes,
    arrival: float,
    stream_arn: str,
    region: str,
    role_arn: str,
) -> dict[str, Any]:
    """One record of the Kinesis event Lambda hands to the function."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": arrival,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": role_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


@dataclass
class _Outcome:
    ok: bool
    first_failed: int | None = None  # index in the batch of the lowest reported failure
    function_error: bool = False
    reason: str = ""


class KinesisPoller:
    """Feeds one stream's shards to one function, with the mapping's settings."""

    def __init__(
        self,
        source: KinesisSource,
        function: LocalFunction,
        kinesis_client: Any,
        region: str,
        send_to_destination: Callable[[dict], None] | None,
        poll_interval_s: float = 0.1,
        retry_backoff_s: float = 0.1,
        archive: Callable[[list[bytes]], object] | None = None,
    ) -> None:
        self.source = source
        self.archive = archive
        self.function = function
        self.kinesis = kinesis_client
        self.stream_name = source.stream_name
        self.stream_arn = source.stream_arn
        self.region = region
        self.send_to_destination = send_to_destination
        self.poll_interval_s = poll_interval_s
        self.retry_backoff_s = retry_backoff_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: dict[str, bool] = {}

    def start(self) -> None:
        shards = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            self._busy[shard_id] = True
            thread = threading.Thread(target=self._run_shard, args=(shard_id,), name=f"poll-{shard_id}")
            self._threads.append(thread)
            thread.start()
        log.info(
            "%s <- %s: %d shard(s), batch %d, window %.1fs, partial=%s, bisect=%s, retries=%d, max age=%ds",
            self.function.logical_id,
            self.stream_name,
            len(shards),
            self.source.batch_size,
            self.source.batching_window_s,
            self.source.report_batch_item_failures,
            self.source.bisect_on_error,
            self.source.max_retries,
            self.source.max_record_age_s,
        )

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def is_idle(self) -> bool:
        """True when every shard has been read to its end and nothing is being delivered."""
        return not any(self._busy.values())

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until the stream is drained (it must stay idle for a couple of polls)."""
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            if self.is_idle():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 3 * self.poll_interval_s:
                    return True
            else:
                quiet_since = None
            time.sleep(self.poll_interval_s / 2)
        return False

    # -- shard loop ---------------------------------------------------------------------------
    def _run_shard(self, shard_id: str) -> None:
        position = self.source.starting_position.upper()
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream_name,
            ShardId=shard_id,
            ShardIteratorType="TRIM_HORIZON" if position == "TRIM_HORIZON" else "LATEST",
        )["ShardIterator"]
        buffer: list[dict] = []
        first_buffered_at = 0.0
        while not self._stop.is_set():
            got = []
            if len(buffer) < self.source.batch_size:
                try:
                    response = self.kinesis.get_records(
                        ShardIterator=iterator, Limit=self.source.batch_size - len(buffer)
                    )
                except Exception:
                    if self._stop.is_set():
                        break
                    log.exception("GetRecords failed on %s; retrying", shard_id)
                    time.sleep(self.poll_interval_s)
                    continue
                iterator = response["NextShardIterator"]
                got = response["Records"]
                if got and self.archive is not None:
                    self._archive(got)
                if got and not buffer:
                    first_buffered_at = time.monotonic()
                buffer.extend(got)
            full = len(buffer) >= self.source.batch_size
            window_over = time.monotonic() - first_buffered_at >= self.source.batching_window_s
            if buffer and (full or window_over):
                self._busy[shard_id] = True
                batch, buffer = buffer[: self.source.batch_size], buffer[self.source.batch_size :]
                self._deliver(shard_id, batch)
                first_buffered_at = time.monotonic()
                continue
            self._busy[shard_id] = bool(buffer)
            if not got:
                wait = self.poll_interval_s
                if buffer:
                    window_left = first_buffered_at + self.source.batching_window_s - time.monotonic()
                    wait = min(wait, max(0.0, window_left))
                self._stop.wait(wait)
        self._busy[shard_id] = False

    def _archive(self, records: list[dict]) -> None:
        if self.archive is None:
            return
        try:
            self.archive([r["Data"] for r in records])
        except Exception:
            log.exception("archiving %d record(s) of %s failed", len(records), self.stream_name)

    # -- delivery with the mapping's error handling -------------------------------------------
    def _deliver(self, shard_id: str, records: list[dict]) -> None:
        pending: deque[tuple[list[dict], int]] = deque([(records, 0)])
        while pending and not self._stop.is_set():
            batch, retries = pending.popleft()
            batch = self._drop_expired(shard_id, batch, retries)
            if not batch:
                continue
            outcome = self._invoke(shard_id, batch)
            if outcome.ok:
                continue
            if outcome.function_error and self.source.bisect_on_error and len(batch) > 1:
                half = len(batch) // 2
                log.info("%s: function error on %d records; bisecting", shard_id, len(batch))
                pending.appendleft((batch[half:], retries))
                pending.appendleft((batch[:half], retries))
                continue
            remaining = batch if outcome.first_failed is None else batch[outcome.first_failed :]
            if 0 <= self.source.max_retries <= retries:
                self._discard(shard_id, remaining, "RetryAttemptsExhausted", retries + 1, outcome)
                continue
            self._stop.wait(min(_MAX_BACKOFF_S, self.retry_backoff_s * (2**retries)))
            pending.appendleft((remaining, retries + 1))

    def _drop_expired(self, shard_id: str, batch: list[dict], retries: int) -> list[dict]:
        if self.source.max_record_age_s < 0:
            return batch
        now = datetime.now(UTC)
        max_age = self.source.max_record_age_s
        expired = [r for r in batch if (now - r["ApproximateArrivalTimestamp"]).total_seconds() > max_age]
        if expired:
            self._discard(shard_id, expired, "RecordAgeExceeded", retries, _Outcome(ok=False))
            return [r for r in batch if r not in expired]
        return batch

    def _invoke(self, shard_id: str, batch: list[dict]) -> _Outcome:
        event = {"Records": [self._event_record(shard_id, r) for r in batch]}
        started = time.perf_counter()
        try:
            response = self.function.invoke(event)
        except Exception as exc:
            log.exception("%s: function error on a batch of %d", self.function.logical_id, len(batch))
            return _Outcome(ok=False, function_error=True, reason=f"{type(exc).__name__}: {exc}")
        elapsed_ms = (time.perf_counter() - started) * 1000
        if not self.source.report_batch_item_failures:
            log.debug("%s: batch of %d ok in %.1f ms", shard_id, len(batch), elapsed_ms)
            return _Outcome(ok=True)
        first_failed = self._first_failed(batch, response)
        if first_failed is None:
            log.debug("%s: batch of %d ok in %.1f ms", shard_id, len(batch), elapsed_ms)
            return _Outcome(ok=True)
        if first_failed < 0:
            log.warning("%s: invalid batchItemFailures response %r; whole batch fails", shard_id, response)
            return _Outcome(ok=False, function_error=True, reason="invalid batchItemFailures response")
        log.info(
            "%s: %d of %d records reported failed; checkpoint before #%d",
            shard_id,
            len(batch) - first_failed,
            len(batch),
            first_failed,
        )
        return _Outcome(ok=False, first_failed=first_failed, reason="batchItemFailures")

    @staticmethod
    def _first_failed(batch: list[dict], response: Any) -> int | None:
        """Index of the lowest failed record; None when all succeeded; -1 for an invalid response."""
        if response is None:
            return None
        if not isinstance(response, dict):
            return -1
        failures = response.get("batchItemFailures")
        if not failures:
            return None
        positions = {r["SequenceNumber"]: i for i, r in enumerate(batch)}
        indices = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in positions:
                return -1
            indices.append(positions[identifier])
        return min(indices)

    def _event_record(self, shard_id: str, record: dict) -> dict:
        return kinesis_event_record(
            shard_id=shard_id,
            sequence_number=record["SequenceNumber"],
            partition_key=record["PartitionKey"],
            data=record["Data"],
            arrival=record["ApproximateArrivalTimestamp"].timestamp(),
            stream_arn=self.stream_arn,
            region=self.region,
            role_arn=f"{self.function.arn}-role",
        )

    def _discard(
        self, shard_id: str, records: list[dict], condition: str, invokes: int, outcome: _Outcome
    ) -> None:
        log.warning(
            "%s: discarding %d record(s) (%s, %s)", shard_id, len(records), condition, outcome.reason or "-"
        )
        if self.send_to_destination is None:
            return
        arrivals = [r["ApproximateArrivalTimestamp"] for r in records]
        self.send_to_destination(
            {
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": self.function.arn,
                    "condition": condition,
                    "approximateInvokeCount": invokes,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled" if outcome.function_error else "",
                },
                "version": "1.0",
                "timestamp": _iso(datetime.now(UTC)),
                "KinesisBatchInfo": {
                    "shardId": shard_id,
                    "startSequenceNumber": records[0]["SequenceNumber"],
                    "endSequenceNumber": records[-1]["SequenceNumber"],
                    "approximateArrivalOfFirstRecord": _iso(min(arrivals)),
                    "approximateArrivalOfLastRecord": _iso(max(arrivals)),
                    "batchSize": len(records),
                    "streamArn": self.stream_arn,
                },
            }
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sqs_destination(sqs_client: Any, queue_url: str) -> Callable[[dict], None]:
    """An OnFailure destination that sends the invocation record to an SQS queue."""

    def send(message: dict) -> None:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

    return send
