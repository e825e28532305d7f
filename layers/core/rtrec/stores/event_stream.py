"""Kinesis access for the event stream: PutRecords with retry of the records Kinesis did not take."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rtrec.stores.errors import classify, is_transient

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

    def put(self, records: Sequence[StreamRecord]) -> PutOutcome:
        """Write ``records``, retrying the ones Kinesis reports as failed.

        Raises StoreUnavailable or StoreRejected only when nothing was written (the first call
        failed as a whole); once anything is written, a later failing call leaves its records in
        ``failed`` instead, so the caller can tell the client exactly which ones to send again.
        """
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
                try:
                    response = self._client.put_records(
                        StreamName=self._stream_name,
                        Records=[
                            {"PartitionKey": records[i].partition_key, "Data": records[i].data} for i in chunk
                        ],
                    )
                except Exception as error:
                    boundary_error = classify(error, "PutRecords")
                    if not written:
                        raise boundary_error from error
                    code = "ServiceUnavailable" if is_transient(error) else "Rejected"
                    for index in chunk:
                        failed[index] = code
                        still_pending.append(index)
                    continue
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
