"""DynamoDB access for the trending table: per-(bucket, item) counters, added to and read by bucket.

Key: partition ``pk`` = ``"<bucket>#<shard>"`` with shard = a stable hash of the item id modulo the
shard count, sort ``item_id``. Writing by bucket alone would put every write of the current hour on
one partition (about 1,000 writes/s each); the shards spread a bucket over that many partitions, and
a reader queries each of them. ``count`` (N) grows with UpdateItem ``ADD`` (no read, no lock: two
writers of the same item add up); ``expires_at`` (N, epoch seconds) is the table's TTL attribute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from rtrec.stores.errors import StoreRejected, classify

# A bound on what one refresh holds in memory per bucket and shard; far above the distinct items an
# hour of a catalog of a few hundred thousand items touches per shard.
DEFAULT_MAX_ITEMS_PER_PARTITION = 50_000
DEFAULT_READ_CONCURRENCY = 8


def shard_of(item_id: str, shards: int) -> int:
    """The shard of an item: a stable hash (not Python's per-process ``hash``) modulo ``shards``."""
    digest = hashlib.blake2b(item_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % shards


def partition_key(bucket: int, shard: int) -> str:
    return f"{bucket}#{shard}"


def _count(value: float) -> Decimal:
    """A count DynamoDB stores exactly enough: finite, positive, 9 significant digits."""
    return Decimal(format(value, ".9g"))


class TrendingTable:
    """Adds to and reads the counters on a low-level DynamoDB client."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        shards: int,
        max_items_per_partition: int = DEFAULT_MAX_ITEMS_PER_PARTITION,
        read_concurrency: int = DEFAULT_READ_CONCURRENCY,
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._client = client
        self._name = table_name
        self.shards = shards
        self.max_items_per_partition = max_items_per_partition
        self.read_concurrency = max(1, read_concurrency)
        # Partitions whose read stopped at the cap (the counts beyond it are left out).
        self.truncated_reads = 0

    def add(self, bucket: int, item_id: str, count: float, expires_at: int) -> None:
        """Add ``count`` to the item's counter in ``bucket`` (created at 0 when absent)."""
        if not count > 0:
            raise StoreRejected(f"UpdateItem: a count must be positive, got {count!r}")
        try:
            self._client.update_item(
                TableName=self._name,
                Key={
                    "pk": {"S": partition_key(bucket, shard_of(item_id, self.shards))},
                    "item_id": {"S": item_id},
                },
                UpdateExpression="ADD #count :count SET expires_at = :expires",
                ExpressionAttributeNames={"#count": "count"},  # COUNT is a reserved word
                ExpressionAttributeValues={
                    ":count": {"N": str(_count(count))},
                    ":expires": {"N": str(int(expires_at))},
                },
            )
        except Exception as error:
            raise classify(error, "UpdateItem") from error

    def read(self, buckets: Sequence[int]) -> dict[int, dict[str, float]]:
        """Item counts of each bucket (every shard, every page up to the cap); raises StoreError."""
        partitions = [(bucket, shard) for bucket in buckets for shard in range(self.shards)]
        workers = min(self.read_concurrency, len(partitions))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(lambda p: self._read_partition(*p), partitions))
        else:
            parts = [self._read_partition(*p) for p in partitions]
        result: dict[int, dict[str, float]] = {bucket: {} for bucket in buckets}
        for (bucket, _), counts in zip(partitions, parts, strict=True):
            result[bucket].update(counts)
        return result

    def _read_partition(self, bucket: int, shard: int) -> dict[str, float]:
        counts: dict[str, float] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition_key(bucket, shard)}},
            "ProjectionExpression": "item_id, #count",
            "ExpressionAttributeNames": {"#count": "count"},
        }
        while True:
            kwargs["Limit"] = self.max_items_per_partition - len(counts)
            try:
                response = self._client.query(**kwargs)
            except Exception as error:
                raise classify(error, "Query") from error
            for raw in response.get("Items", []):
                counts[raw["item_id"]["S"]] = float(raw.get("count", {}).get("N", "0"))
            if "LastEvaluatedKey" not in response:
                return counts
            if len(counts) >= self.max_items_per_partition:
                self.truncated_reads += 1
                return counts
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


__all__ = ["TrendingTable", "partition_key", "shard_of"]
