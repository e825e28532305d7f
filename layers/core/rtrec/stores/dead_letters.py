"""SQS access for the dead-letter queue (env DEAD_LETTER_QUEUE_URL): where poison records go."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_MESSAGES_PER_CALL = 10
# SQS takes 256 KiB per message; the envelope and base64 need room too.
MAX_PAYLOAD_CHARS = 150_000


@dataclass(frozen=True)
class DeadLetter:
    """A record that can never be applied, with the reason and where it came from."""

    reason: str
    source: str  # e.g. the function name
    sequence_number: str
    partition_key: str
    data_base64: str
    event_source_arn: str | None = None

    def to_body(self) -> str:
        data = self.data_base64
        truncated = len(data) > MAX_PAYLOAD_CHARS
        return json.dumps(
            {
                "reason": self.reason,
                "source": self.source,
                "sequence_number": self.sequence_number,
                "partition_key": self.partition_key,
                "event_source_arn": self.event_source_arn,
                "data_base64": data[:MAX_PAYLOAD_CHARS],
                "data_truncated": truncated,
            }
        )


class DeadLetterQueue:
    """Sends dead letters to one SQS queue in batches of ten."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    @classmethod
    def from_env(cls, client: Any = None) -> DeadLetterQueue:
        """The queue at DEAD_LETTER_QUEUE_URL."""
        if client is None:
            import boto3

            client = boto3.client("sqs")
        return cls(client, os.environ["DEAD_LETTER_QUEUE_URL"])

    def send(self, letters: Sequence[DeadLetter]) -> list[int]:
        """Send ``letters``; returns the indices SQS did not accept (the caller retries them later).

        A whole-call error (queue missing, throttled) propagates.
        """
        failed: list[int] = []
        for start in range(0, len(letters), MAX_MESSAGES_PER_CALL):
            chunk = list(range(start, min(start + MAX_MESSAGES_PER_CALL, len(letters))))
            response = self._client.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "MessageBody": letters[i].to_body()} for i in chunk],
            )
            failed.extend(int(entry["Id"]) for entry in response.get("Failed", []))
        return sorted(failed)
