"""Kinesis → per-user state in DynamoDB.

Why not Powertools' ``BatchProcessor``: it handles records one by one, while
this function must group a batch by user, apply each user's records in stream
order with one conditional write, and fail a user's later records together
with an earlier one. The response has the same shape
(``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``), read by
the event source mapping with ReportBatchItemFailures.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtrec.events import Event, InvalidEvent, parse_stream_record
from rtrec.features import Catalog
from rtrec.state import DEFAULT_TTL_SECONDS, FoldResult, fold
from rtrec.stores.dead_letters import DeadLetter, DeadLetterQueue
from rtrec.stores.user_state import UserStateStore, VersionConflict

logger = Logger()
tracer = Tracer()
metrics = Metrics()

MAX_WRITE_ATTEMPTS = 5
# Users written at the same time. DynamoDB latency, not CPU, bounds a batch's duration, so a few
# threads cut freshness lag for batches that hold many users.
WRITE_CONCURRENCY = 8
BASE_BACKOFF_S = 0.02


class WriteContention(Exception):
    """The optimistic lock was lost on every attempt; the stream retries the records."""


@dataclass
class Dependencies:
    """Everything the handler talks to; tests build their own."""

    store: UserStateStore
    dead_letters: DeadLetterQueue
    catalog: Catalog | None
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    sleep: Callable[[float], None] = time.sleep
    write_concurrency: int = WRITE_CONCURRENCY
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))


def load_catalog(model_dir: str | None) -> Catalog | None:
    """The item → genre table from the model artifact; None (no interests) when it is absent."""
    path = Path(model_dir or "") / "items.json"
    if not model_dir or not path.is_file():
        logger.warning("no catalog at MODEL_DIR; interests will not be updated", extra={"path": str(path)})
        return None
    return Catalog.load(path)


deps: Dependencies | None = None


def _deps() -> Dependencies:
    global deps
    if deps is None:
        deps = Dependencies(
            store=UserStateStore.from_env(),
            dead_letters=DeadLetterQueue.from_env(),
            catalog=load_catalog(os.environ.get("MODEL_DIR")),
            ttl_seconds=int(os.environ.get("USER_STATE_TTL_DAYS", "180")) * 24 * 3600,
        )
    return deps


@dataclass
class _UserRecords:
    sequence_numbers: list[str] = field(default_factory=list)
    events: list[Event | None] = field(default_factory=list)  # None = a poison record of this user


@dataclass
class BatchOutcome:
    """What one batch did; ``failures`` are sequence numbers, in stream order."""

    failures: list[str]
    applied: int = 0
    duplicates: int = 0
    poison: int = 0
    users_written: int = 0
    write_conflicts: int = 0
    max_lag_ms: int | None = None

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


def _decode(record: dict[str, Any]) -> Event:
    payload = record["kinesis"]
    try:
        data = base64.b64decode(payload["data"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("record data is not valid base64") from None
    event = parse_stream_record(data)
    if event.user_id != payload.get("partitionKey"):
        # Per-user ordering relies on every event of a user sharing one partition key.
        raise InvalidEvent("partition key does not match the record's user_id")
    return event


@dataclass
class _UserResult:
    result: FoldResult | None = None
    conflicts: int = 0
    error: BaseException | None = None


def _apply_user(
    user_id: str,
    events: list[Event],
    d: Dependencies,
    prefetched: dict[str, Any] | None,
) -> _UserResult:
    """Fold and write one user's events; never raises (the error is returned for reporting)."""
    outcome = _UserResult()
    try:
        outcome.result = _write_user(user_id, events, d, prefetched, outcome)
    except Exception as error:
        outcome.error = error
    return outcome


def _write_user(
    user_id: str,
    events: list[Event],
    d: Dependencies,
    prefetched: dict[str, Any] | None,
    outcome: _UserResult,
) -> FoldResult:
    for attempt in range(MAX_WRITE_ATTEMPTS):
        if attempt == 0 and prefetched is not None:
            state = prefetched[user_id]
        else:
            state = d.store.get(user_id, consistent=True)
        result = fold(state, user_id, events, d.catalog, d.clock_ms(), d.ttl_seconds)
        if not result.changed:
            return result
        try:
            d.store.put(result.state)
            return result
        except VersionConflict:
            outcome.conflicts += 1
            if attempt + 1 < MAX_WRITE_ATTEMPTS:
                d.sleep(BASE_BACKOFF_S * 2**attempt * (1 + random.random()))
    raise WriteContention(f"version conflict on {MAX_WRITE_ATTEMPTS} attempts")


@tracer.capture_method
def process_batch(records: list[dict[str, Any]], d: Dependencies) -> BatchOutcome:
    """Apply a Kinesis batch; returns the sequence numbers the stream must retry."""
    order = {r["kinesis"]["sequenceNumber"]: n for n, r in enumerate(records)}
    failed: set[str] = set()
    outcome = BatchOutcome(failures=[])
    by_user: dict[str, _UserRecords] = {}
    letters: list[DeadLetter] = []
    letter_sequence_numbers: list[str] = []

    for record in records:
        payload = record["kinesis"]
        sequence_number = payload["sequenceNumber"]
        try:
            event: Event | None = _decode(record)
            user_key = event.user_id
        except InvalidEvent as error:
            event, user_key = None, str(payload.get("partitionKey", ""))
            letters.append(
                DeadLetter(
                    reason=str(error),
                    source=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "ingest"),
                    sequence_number=sequence_number,
                    partition_key=user_key,
                    data_base64=str(payload.get("data", "")),
                    event_source_arn=record.get("eventSourceARN"),
                )
            )
            letter_sequence_numbers.append(sequence_number)
            logger.warning("poison record", extra={"sequence_number": sequence_number, "reason": str(error)})
        group = by_user.setdefault(user_key, _UserRecords())
        group.sequence_numbers.append(sequence_number)
        group.events.append(event)

    if letters:
        try:
            undelivered = d.dead_letters.send(letters)
        except Exception:
            logger.exception("dead-letter queue unavailable")
            undelivered = list(range(len(letters)))
        failed.update(letter_sequence_numbers[i] for i in undelivered)
        outcome.poison = len(letters) - len(undelivered)

    work: list[tuple[str, list[Event], list[str]]] = []
    for user_id, group in by_user.items():
        # A record that failed (here: a poison record not yet dead-lettered) blocks
        # the user's later records, so they are never applied out of order.
        cut = next((i for i, s in enumerate(group.sequence_numbers) if s in failed), len(group.events))
        failed.update(group.sequence_numbers[cut:])
        events = [e for e in group.events[:cut] if e is not None]
        if events:
            work.append((user_id, events, group.sequence_numbers[:cut]))

    # One BatchGetItem instead of a GetItem per user; on conflict _apply_user re-reads singly.
    prefetched = None
    if len(work) > 1:
        try:
            prefetched = d.store.get_many([user_id for user_id, _, _ in work])
        except Exception:
            logger.warning("batch read failed; reading users one by one", exc_info=True)

    now_ms = d.clock_ms()
    # Users are independent, so their writes overlap; each user's records stay in one call, in order.
    workers = min(d.write_concurrency, len(work))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda job: _apply_user(job[0], job[1], d, prefetched), work))
    else:
        results = [_apply_user(user_id, events, d, prefetched) for user_id, events, _ in work]

    for (_, events, sequence_numbers), user in zip(work, results, strict=True):
        outcome.write_conflicts += user.conflicts
        result = user.result
        if result is None:
            logger.error(
                "user state write failed; the stream will retry",
                exc_info=user.error,
                extra={"records": len(events)},
            )
            failed.update(sequence_numbers)
            continue
        outcome.applied += len(result.applied)
        outcome.duplicates += len(result.duplicates)
        if result.changed:
            outcome.users_written += 1
            lag = now_ms - min(e.ts for e in result.applied)
            outcome.max_lag_ms = lag if outcome.max_lag_ms is None else max(outcome.max_lag_ms, lag)

    outcome.failures = sorted(failed, key=order.__getitem__)
    return outcome


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point for the Kinesis event source mapping (ReportBatchItemFailures on)."""
    records = event.get("Records", [])
    if records:
        logger.set_correlation_id(records[0].get("eventID"))
    outcome = process_batch(records, _deps())
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=outcome.applied)
    metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="PoisonRecords", unit=MetricUnit.Count, value=outcome.poison)
    metrics.add_metric(name="UsersWritten", unit=MetricUnit.Count, value=outcome.users_written)
    metrics.add_metric(name="WriteConflicts", unit=MetricUnit.Count, value=outcome.write_conflicts)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(outcome.failures))
    if outcome.max_lag_ms is not None:
        metrics.add_metric(name="FreshnessLag", unit=MetricUnit.Milliseconds, value=outcome.max_lag_ms)
    logger.info(
        "batch done",
        extra={
            "records": len(records),
            "applied": outcome.applied,
            "duplicates": outcome.duplicates,
            "poison": outcome.poison,
            "users_written": outcome.users_written,
            "failed": len(outcome.failures),
        },
    )
    return outcome.response()
