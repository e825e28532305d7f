"""SQS access for the dead-letter queue: where poison records go, with their reason.

SQS takes at most 256 KiB per message and per SendMessageBatch call, and ten messages per call.
A Kinesis record can hold 1 MiB, so a large poison record is truncated (its full size and SHA-256
stay in the letter) and calls are packed by size: a send can then only fail for a transient
reason, never because of what the record holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_MESSAGES_PER_CALL = 10
SQS_MAX_BYTES = 256 * 1024
# Room left for SQS's own accounting of message attributes and for the batch entry ids.
MAX_MESSAGE_BYTES = SQS_MAX_BYTES - 2 * 1024
MAX_CALL_BYTES = SQS_MAX_BYTES - 2 * 1024
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class DeadLetter:
    """A record that can never be applied, with the reason and where it came from."""

    reason: str
    source: str  # e.g. the function name
    sequence_number: str
    partition_key: str
    data_base64: str
    event_source_arn: str | None = None
    shard_id: str | None = None

    def to_body(self) -> str:
        """The message body: the letter as JSON, at most MAX_MESSAGE_BYTES of UTF-8."""
        data = self.data_base64
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = data.encode("utf-8", "replace")
        body = {
            "reason": self.reason[:MAX_REASON_CHARS],
            "source": self.source[:200],
            "sequence_number": self.sequence_number[:200],
            "shard_id": (self.shard_id or "")[:200],
            "partition_key": _printable(self.partition_key[:300]),
            "event_source_arn": self.event_source_arn,
            "data_size": len(raw),
            "data_sha256": hashlib.sha256(raw).hexdigest(),
            "data_base64": "",
            "data_truncated": False,
        }
        # json.dumps escapes to ASCII, so characters are bytes; base64 text needs no escaping.
        room = MAX_MESSAGE_BYTES - len(json.dumps(body)) - 16
        payload = data if data.isascii() else base64.b64encode(raw).decode()
        body["data_base64"] = payload[:room]
        body["data_truncated"] = len(payload) > room
        return json.dumps(body)


def _printable(text: str) -> str:
    # Lone surrogates cannot be encoded for SQS: keep everything else, replace those.
    return text.encode("utf-8", "replace").decode("utf-8")


class DeadLetterQueue:
    """Sends dead letters to one SQS queue, packed by count and size, retrying what SQS did not take."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        max_attempts: int = 3,
        base_delay_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep

    def send(self, letters: Sequence[DeadLetter]) -> list[int]:
        """Send ``letters``; returns the indices never accepted (the caller retries those records).

        Never raises: a call that fails (queue unreachable, throttled) leaves its letters
        undelivered, and the letters of other calls are unaffected.
        """
        bodies = [letter.to_body() for letter in letters]
        pending = list(range(len(letters)))
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._base_delay_s * 2 ** (attempt - 1) * (1 + random.random()))
            failed: list[int] = []
            for chunk in _pack(pending, bodies):
                failed.extend(self._send_chunk(chunk, bodies))
            pending = failed
            if not pending:
                break
        return sorted(pending)

    def _send_chunk(self, chunk: list[int], bodies: list[str]) -> list[int]:
        try:
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in chunk],
            )
        except Exception:
            return chunk
        return [int(entry["Id"]) for entry in response.get("Failed", [])]


def _pack(indices: list[int], bodies: list[str]) -> list[list[int]]:
    """Group message indices into calls of at most ten messages and MAX_CALL_BYTES."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in indices:
        length = len(bodies[index].encode())
        if current and (len(current) == MAX_MESSAGES_PER_CALL or size + length > MAX_CALL_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += length
    if current:
        chunks.append(current)
    return chunks
