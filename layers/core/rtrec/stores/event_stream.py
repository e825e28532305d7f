"""Kinesis access for the event stream (env EVENT_STREAM_NAME): PutRecords with retry of failed records."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_RECORDS_PER_CALL = 500


@dataclass(frozen=True)
class StreamRecord:
    """One record to write: the partition key (the user id) and the payload."""

    partition_key: str
    data: bytes


@dataclass
class PutOutcome:
    """Indices (into the records given) written, and the error code of each one that never was."""

    written: list[int]
    failed: dict[int, str]


class EventStream:
    """Writes records to one Kinesis stream.

    PutRecords is not atomic: it reports failures per record (throttling,
    internal errors). Only those records are retried, with bounded exponential
    backoff, so nothing is written twice by this writer.
    """

    def __init__(
        self,
        client: Any,
        stream_name: str,
        max_attempts: int = 3,
        base_delay_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._stream_name = stream_name
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep

    @classmethod
    def from_env(cls, client: Any = None) -> EventStream:
        """The writer for the stream named by EVENT_STREAM_NAME."""
        if client is None:
            import boto3

            client = boto3.client("kinesis")
        return cls(client, os.environ["EVENT_STREAM_NAME"])

    def put(self, records: Sequence[StreamRecord]) -> PutOutcome:
        """Write ``records``; a whole-call error (e.g. no such stream) propagates."""
        pending = list(range(len(records)))
        written: list[int] = []
        failed: dict[int, str] = {}
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._base_delay_s * 2 ** (attempt - 1) * (1 + random.random()))
            failed = {}
            still_pending: list[int] = []
            for start in range(0, len(pending), MAX_RECORDS_PER_CALL):
                chunk = pending[start : start + MAX_RECORDS_PER_CALL]
                response = self._client.put_records(
                    StreamName=self._stream_name,
                    Records=[
                        {"PartitionKey": records[i].partition_key, "Data": records[i].data} for i in chunk
                    ],
                )
                for index, result in zip(chunk, response["Records"], strict=True):
                    if result.get("ErrorCode"):
                        failed[index] = result["ErrorCode"]
                        still_pending.append(index)
                    else:
                        written.append(index)
            pending = still_pending
            if not pending:
                break
        return PutOutcome(sorted(written), failed)
