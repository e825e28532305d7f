"""The ingest algorithm: a Kinesis batch becomes one conditional write per user.

Free of Lambda and of boto3: the handler (functions/ingest) hands it the records and the stores.

Per batch:
1. Decode every record with the rules collect applies (``parse_stream_record``). A record that
   does not decode is poison: it goes to the dead-letter queue with its reason.
2. Group by user, keeping stream order. A poison record that could not be dead-lettered blocks
   the user's later records (they are retried with it, so a user's events are never applied out
   of order); other users are unaffected.
3. Fold each user's events into their state and write it conditionally on the version read.
   A lost optimistic lock re-reads and retries; throttling, timeouts and AWS 5xx report the
   user's records as batch item failures (Kinesis delivers them again, the shard high-water mark
   in the state makes that exactly once). A deterministic failure (a value the store refuses, a
   bug in the fold) is narrowed to the one event that causes it: the user's events are written
   one at a time and only the event that fails is dead-lettered.
4. Before starting a user, the remaining time is checked: when the invocation is about to time
   out, the rest is reported as failures instead of being cut off mid-write.

Failures come back in stream order, as ReportBatchItemFailures expects.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from rtrec.events import Event, InvalidEvent, parse_stream_record
from rtrec.features import Catalog
from rtrec.rotation import InvalidImpression, ShownList, parse_impression_line
from rtrec.state import (
    DEFAULT_DEDUPE_HORIZON_MS,
    DEFAULT_TTL_SECONDS,
    FoldResult,
    ShownFoldResult,
    StreamPosition,
    UserState,
    fold,
    fold_shown,
)
from rtrec.stores.dead_letters import DeadLetter
from rtrec.stores.errors import StoreError, StoreUnavailable
from rtrec.stores.user_state import VersionConflict


class StateStore(Protocol):
    """What ingest needs of the user-state store (``rtrec.stores.user_state.UserStateStore``)."""

    def get(self, user_id: str, consistent: bool = True) -> UserState | None: ...

    def get_many(self, user_ids: Iterable[str], consistent: bool = True) -> dict[str, UserState | None]: ...

    def put(self, state: UserState) -> None: ...


class DeadLetterSink(Protocol):
    """What ingest needs of the dead-letter queue: send, and say which letters were not taken."""

    def send(self, letters: Sequence[DeadLetter]) -> list[int]: ...


class WriteContention(StoreUnavailable):
    """The optimistic lock was lost on every attempt; the stream retries the records."""


@dataclass(frozen=True)
class KinesisRecord:
    """One record of a Kinesis batch, as the event source mapping delivers it."""

    sequence_number: str
    shard_id: str
    partition_key: str
    data_base64: str
    event_source_arn: str | None = None

    @property
    def position(self) -> StreamPosition | None:
        """Shard and sequence number; None when the sequence number is not a decimal number."""
        if self.sequence_number.isascii() and self.sequence_number.isdigit():
            return StreamPosition(self.shard_id, int(self.sequence_number))
        return None


def kinesis_records(event: Mapping[str, Any]) -> list[KinesisRecord]:
    """The records of a Lambda Kinesis event; the shard id is the prefix of each ``eventID``."""
    records = []
    for raw in event.get("Records") or []:
        payload = raw.get("kinesis") or {}
        event_id = str(raw.get("eventID") or "")
        records.append(
            KinesisRecord(
                sequence_number=str(payload.get("sequenceNumber", "")),
                shard_id=event_id.split(":", 1)[0] if ":" in event_id else "",
                partition_key=str(payload.get("partitionKey", "")),
                data_base64=str(payload.get("data", "")),
                event_source_arn=raw.get("eventSourceARN"),
            )
        )
    return records


class InvalidLogPayload(ValueError):
    """A CloudWatch Logs delivery that does not decode (base64, gzip, JSON); the message says why."""


# A delivery is at most 1 MB of compressed log events (the subscription's limit): far below this.
_MAX_LOG_PAYLOAD_BYTES = 64 * 1024 * 1024


def log_events(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(id, message)`` log events of a CloudWatch Logs subscription delivery to Lambda.

    The payload is ``{"awslogs": {"data": base64(gzip(JSON))}}``; a ``CONTROL_MESSAGE`` (sent once
    when the subscription is created) has no events. Raises InvalidLogPayload when it does not decode.
    """
    try:
        data = base64.b64decode(str((event.get("awslogs") or {}).get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidLogPayload("awslogs.data is not valid base64") from None
    try:
        decompressor = zlib.decompressobj(wbits=31)  # gzip, bounded: a small payload can expand a lot
        text = decompressor.decompress(data, _MAX_LOG_PAYLOAD_BYTES)
        complete = not decompressor.unconsumed_tail
        payload = json.loads(text) if complete else None
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidLogPayload(f"awslogs.data is not gzip-compressed JSON: {type(error).__name__}") from None
    if not complete:
        raise InvalidLogPayload("awslogs.data expands past the limit")
    if not isinstance(payload, dict):
        raise InvalidLogPayload("awslogs.data is not a JSON object")
    if payload.get("messageType") == "CONTROL_MESSAGE":
        return []
    entries = payload.get("logEvents")
    if not isinstance(entries, list):
        raise InvalidLogPayload("logEvents is missing")
    return [
        (str(entry.get("id", "")), entry["message"])
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("message"), str)
    ]


@dataclass
class ImpressionOutcome:
    """What one delivery of impression lines did."""

    lines: int = 0
    impressions: int = 0
    invalid: int = 0  # lines that are impressions but break the contract: logged, skipped
    shown_added: int = 0
    duplicates: int = 0  # entries already in the state (a redelivery)
    users_written: int = 0
    users_without_state: int = 0  # no state item: an impression never creates one
    users_failed: int = 0  # transient store trouble: the delivery should be retried
    users_refused: int = 0  # a deterministic failure: logged, the user's impressions skipped

    @property
    def retry(self) -> bool:
        """Whether the delivery should come again (the fold is idempotent: a retry counts nothing twice)."""
        return self.users_failed > 0


@dataclass(frozen=True)
class IngestPolicy:
    """How the batch is applied: retention of the state, de-duplication horizon, concurrency, retries."""

    ttl_seconds: int = DEFAULT_TTL_SECONDS
    dedupe_horizon_ms: int = DEFAULT_DEDUPE_HORIZON_MS
    # DynamoDB latency, not CPU, bounds a batch's duration: a few threads cut freshness lag for
    # batches that hold many users.
    write_concurrency: int = 8
    max_write_attempts: int = 5
    base_backoff_s: float = 0.02
    deadline_reserve_ms: int = 5000
    source: str = "ingest"


@dataclass
class BatchOutcome:
    """What one batch did; ``failures`` are sequence numbers, in stream order."""

    failures: list[str] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    poison: int = 0
    users_written: int = 0
    write_conflicts: int = 0
    deadline_skipped: int = 0
    max_lag_ms: int | None = None
    # The events written to user states by this batch, once each (no duplicates, no redeliveries, no
    # dead letters): what the trending counters add (rtrec.trending).
    applied_events: list[Event] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        """The ReportBatchItemFailures answer."""
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.failures]}


@dataclass
class _Entry:
    record: KinesisRecord
    event: Event | None
    reason: str | None = None  # why the record is poison


@dataclass
class _UserResult:
    results: list[FoldResult] = field(default_factory=list)
    failed_from: int | None = None  # index of the first entry to report for retry
    poison: int = 0
    conflicts: int = 0
    error: BaseException | None = None


class BatchIngestor:
    """Applies Kinesis batches to user states; one per container, reused across invocations."""

    def __init__(
        self,
        store: StateStore,
        dead_letters: DeadLetterSink,
        catalog: Catalog | None,
        policy: IngestPolicy | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        sleep: Callable[[float], None] = time.sleep,
        on_error: Callable[[str, BaseException, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.catalog = catalog
        self.policy = policy or IngestPolicy()
        self.clock_ms = clock_ms
        self.sleep = sleep
        self.on_error = on_error or (lambda message, error, extra: None)

    def process(
        self, records: Sequence[KinesisRecord], remaining_ms: Callable[[], int] | None = None
    ) -> BatchOutcome:
        """Apply ``records``; the outcome lists the sequence numbers the stream must deliver again."""
        outcome = BatchOutcome()
        order = {r.sequence_number: n for n, r in enumerate(records)}
        now_ms = self.clock_ms()
        groups: dict[str, list[_Entry]] = {}
        for record in records:
            entry = self._decode(record, now_ms)
            user_key = entry.event.user_id if entry.event is not None else record.partition_key
            groups.setdefault(user_key, []).append(entry)

        failed = self._dead_letter_poison(groups, outcome)
        work: list[tuple[str, list[_Entry]]] = []
        for user_id, entries in groups.items():
            # A record not yet settled (a poison record the queue did not take) blocks the user's
            # later records, so they are never applied out of order.
            cut = next((i for i, e in enumerate(entries) if e.record.sequence_number in failed), len(entries))
            failed.update(e.record.sequence_number for e in entries[cut:])
            valid = [e for e in entries[:cut] if e.event is not None]
            if valid:
                work.append((user_id, valid))

        prefetched = self._prefetch([user_id for user_id, _ in work])
        deadline = _Deadline(remaining_ms, self.policy.deadline_reserve_ms)
        workers = min(self.policy.write_concurrency, len(work))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(
                    pool.map(lambda job: self._apply_user(job[0], job[1], prefetched, deadline), work)
                )
        else:
            results = [self._apply_user(user_id, entries, prefetched, deadline) for user_id, entries in work]

        for (_, entries), user in zip(work, results, strict=True):
            outcome.write_conflicts += user.conflicts
            outcome.poison += user.poison
            if user.failed_from is not None:
                failed.update(e.record.sequence_number for e in entries[user.failed_from :])
                if user.error is None:
                    outcome.deadline_skipped += len(entries) - user.failed_from
            applied = [event for result in user.results for event in result.applied]
            outcome.applied += len(applied)
            outcome.applied_events.extend(applied)
            outcome.duplicates += sum(len(result.duplicates) for result in user.results)
            if applied:
                outcome.users_written += 1
                lag = now_ms - min(e.ts for e in applied)
                outcome.max_lag_ms = lag if outcome.max_lag_ms is None else max(outcome.max_lag_ms, lag)

        outcome.failures = sorted(failed, key=order.__getitem__)
        return outcome

    def process_impressions(self, lines: Sequence[tuple[str, str]]) -> ImpressionOutcome:
        """Fold the recommend function's impression log lines into the users' shown lists.

        One read and at most one conditional write per user, with the same version lock as the event
        fold. A line that is not an impression is ignored; a broken one is logged and skipped; one
        user's failure never drops another's impressions. Never raises: ``retry`` says whether the
        delivery should be retried.
        """
        outcome = ImpressionOutcome(lines=len(lines))
        by_user: dict[str, list[ShownList]] = {}
        for line_id, message in lines:
            try:
                shown = parse_impression_line(message)
            except InvalidImpression as error:
                outcome.invalid += 1
                self.on_error("impression line skipped", error, {"log_event_id": line_id})
                continue
            if shown is not None:
                outcome.impressions += 1
                by_user.setdefault(shown.user_id, []).append(shown)
        if not by_user:
            return outcome
        prefetched = self._prefetch(list(by_user))
        workers = min(self.policy.write_concurrency, len(by_user))
        jobs = list(by_user.items())
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(lambda job: self._shown_user(job[0], job[1], prefetched), jobs))
        else:
            results = [self._shown_user(user_id, shown, prefetched) for user_id, shown in jobs]
        for result in results:
            if isinstance(result, StoreUnavailable):
                outcome.users_failed += 1
            elif isinstance(result, BaseException):
                outcome.users_refused += 1
            elif result is None:
                outcome.users_without_state += 1
            else:
                outcome.shown_added += result.added
                outcome.duplicates += result.duplicates
                outcome.users_written += int(result.changed)
        return outcome

    def _shown_user(
        self, user_id: str, shown: list[ShownList], prefetched: dict[str, UserState | None] | None
    ) -> ShownFoldResult | BaseException | None:
        """Fold and write one user's impressions; the error instead of raising it."""
        try:
            for attempt in range(self.policy.max_write_attempts):
                if attempt == 0 and prefetched is not None:
                    state = prefetched.get(user_id)
                else:
                    state = self.store.get(user_id, consistent=True)
                result = fold_shown(state, shown, self.clock_ms())
                if result is None or not result.changed:
                    return result
                try:
                    self.store.put(result.state)
                    return result
                except VersionConflict:
                    if attempt + 1 < self.policy.max_write_attempts:
                        self.sleep(self.policy.base_backoff_s * 2**attempt * (1 + random.random()))
            raise WriteContention(f"version conflict on {self.policy.max_write_attempts} attempts")
        except StoreUnavailable as error:
            self.on_error(
                "shown items not written; the delivery will be retried", error, {"impressions": len(shown)}
            )
            return error
        except Exception as error:
            self.on_error("shown items refused", error, {"impressions": len(shown)})
            return error

    def apply_history(self, user_id: str, events: Sequence[Event]) -> FoldResult:
        """Fold one user's historical events (any dates, oldest first) with the same fold and write.

        The backfill path: events that never went through the stream (no positions), so only the
        event-id log de-duplicates them. Raises StoreUnavailable or StoreRejected like a stream write.
        """
        return self._write(user_id, list(events), [None] * len(events), None, _UserResult())

    # ---------- decoding and dead letters ----------

    def _decode(self, record: KinesisRecord, now_ms: int) -> _Entry:
        """The record's event, or the reason it is poison; never raises."""
        try:
            try:
                data = base64.b64decode(record.data_base64, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidEvent("record data is not valid base64") from None
            event = parse_stream_record(data, now_ms)
            if event.user_id != record.partition_key:
                # Per-user ordering relies on every event of a user sharing one partition key.
                raise InvalidEvent("partition key does not match the record's user_id")
            return _Entry(record, event)
        except InvalidEvent as error:
            return _Entry(record, None, str(error))
        except Exception as error:  # a decoder bug must cost one record, not the batch
            return _Entry(record, None, f"record could not be decoded: {type(error).__name__}: {error}")

    def _letter(self, record: KinesisRecord, reason: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            source=self.policy.source,
            sequence_number=record.sequence_number,
            partition_key=record.partition_key,
            data_base64=record.data_base64,
            event_source_arn=record.event_source_arn,
            shard_id=record.shard_id,
        )

    def _dead_letter_poison(self, groups: dict[str, list[_Entry]], outcome: BatchOutcome) -> set[str]:
        """Send the poison records; returns the sequence numbers of those the queue did not take."""
        poison = [e for entries in groups.values() for e in entries if e.event is None]
        if not poison:
            return set()
        for entry in poison:
            self.on_error(
                "poison record",
                InvalidEvent(entry.reason or ""),
                {"sequence_number": entry.record.sequence_number},
            )
        undelivered = self._send([self._letter(e.record, e.reason or "") for e in poison])
        outcome.poison += len(poison) - len(undelivered)
        return {poison[i].record.sequence_number for i in undelivered}

    def _send(self, letters: list[DeadLetter]) -> list[int]:
        try:
            return self.dead_letters.send(letters)
        except Exception as error:  # a sink that raises is treated as one that took nothing
            self.on_error("dead-letter queue unavailable", error, {"letters": len(letters)})
            return list(range(len(letters)))

    # ---------- state writes ----------

    def _prefetch(self, user_ids: list[str]) -> dict[str, UserState | None] | None:
        """One BatchGetItem for the batch's users; None (read singly) when it fails."""
        if len(user_ids) < 2:
            return None
        try:
            return self.store.get_many(user_ids)
        except Exception as error:
            self.on_error("batch read failed; reading users one by one", error, {"users": len(user_ids)})
            return None

    def _apply_user(
        self,
        user_id: str,
        entries: list[_Entry],
        prefetched: dict[str, UserState | None] | None,
        deadline: _Deadline,
    ) -> _UserResult:
        """Fold and write one user's events; never raises (the outcome says what to retry)."""
        outcome = _UserResult()
        if deadline.passed():
            outcome.failed_from = 0
            return outcome
        events = [e.event for e in entries if e.event is not None]
        positions = [e.record.position for e in entries]
        try:
            outcome.results.append(self._write(user_id, events, positions, prefetched, outcome))
        except StoreUnavailable as error:
            self.on_error("user state write failed; the stream will retry", error, {"records": len(events)})
            outcome.failed_from, outcome.error = 0, error
        except Exception as error:
            self.on_error("user state write refused; isolating the event", error, {"records": len(events)})
            self._apply_one_by_one(user_id, entries, outcome, deadline)
        return outcome

    def _apply_one_by_one(
        self, user_id: str, entries: list[_Entry], outcome: _UserResult, deadline: _Deadline
    ) -> None:
        """Write the user's events singly, dead-lettering each one the store refuses."""
        for index, entry in enumerate(entries):
            assert entry.event is not None
            if deadline.passed():
                outcome.failed_from = index
                return
            try:
                outcome.results.append(
                    self._write(user_id, [entry.event], [entry.record.position], None, outcome)
                )
            except StoreUnavailable as error:
                outcome.failed_from, outcome.error = index, error
                return
            except Exception as error:
                reason = f"state write refused: {type(error).__name__}: {error}"
                if self._send([self._letter(entry.record, reason)]):
                    outcome.failed_from, outcome.error = index, error
                    return
                outcome.poison += 1

    def _write(
        self,
        user_id: str,
        events: list[Event],
        positions: list[StreamPosition | None],
        prefetched: dict[str, UserState | None] | None,
        outcome: _UserResult,
    ) -> FoldResult:
        policy = self.policy
        for attempt in range(policy.max_write_attempts):
            if attempt == 0 and prefetched is not None:
                state = prefetched.get(user_id)
            else:
                state = self.store.get(user_id, consistent=True)
            result = fold(
                state,
                user_id,
                events,
                self.catalog,
                self.clock_ms(),
                policy.ttl_seconds,
                positions=positions,
                dedupe_horizon_ms=policy.dedupe_horizon_ms,
            )
            if not result.changed:
                return result
            try:
                self.store.put(result.state)
                return result
            except VersionConflict:
                outcome.conflicts += 1
                if attempt + 1 < policy.max_write_attempts:
                    self.sleep(policy.base_backoff_s * 2**attempt * (1 + random.random()))
        raise WriteContention(f"version conflict on {policy.max_write_attempts} attempts")


class _Deadline:
    """Whether there is still time to start a write, given the invocation's remaining time."""

    def __init__(self, remaining_ms: Callable[[], int] | None, reserve_ms: int) -> None:
        self._remaining_ms = remaining_ms
        self._reserve_ms = reserve_ms

    def passed(self) -> bool:
        return self._remaining_ms is not None and self._remaining_ms() < self._reserve_ms


__all__ = [
    "BatchIngestor",
    "BatchOutcome",
    "DeadLetterSink",
    "ImpressionOutcome",
    "IngestPolicy",
    "InvalidLogPayload",
    "KinesisRecord",
    "StateStore",
    "StoreError",
    "WriteContention",
    "kinesis_records",
    "log_events",
]
