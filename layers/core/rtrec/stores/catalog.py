"""DynamoDB access for the catalog table (key ``item_id``): writes, tombstones and a change feed.

Every write stamps ``updated_at`` and the constant ``feed`` attribute, so the table's ``ByUpdate``
index (partition ``feed``, sort ``updated_at``) is a change feed: a reader that remembers the
newest ``updated_at`` it has seen asks only for what changed since. A delete leaves a tombstone
(``deleted``, unavailable) in the feed, so readers drop the item too; the tombstone expires
through the table's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from rtrec.catalog import CatalogItem
from rtrec.stores.errors import StoreRejected, classify

FEED = "items"
FEED_INDEX = "ByUpdate"
BATCH_WRITE_ITEMS = 25
BATCH_WRITE_ATTEMPTS = 6
TOMBSTONE_TTL_S = 7 * 24 * 3600

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class CatalogChange:
    """One entry of the change feed: the item as written, or a deletion."""

    item: CatalogItem
    deleted: bool
    updated_at: int


def _to_wire(item: CatalogItem, now_ms: int, deleted: bool = False) -> dict[str, Any]:
    record = item.to_record()
    record["attributes"] = {
        name: Decimal(format(value, ".12g")) if isinstance(value, float) else value
        for name, value in item.attributes.items()
    }
    record.update(feed=FEED, updated_at=now_ms, deleted=deleted)
    if deleted:
        record["expires_at"] = now_ms // 1000 + TOMBSTONE_TTL_S
    return {name: _serializer.serialize(value) for name, value in record.items()}


def _from_wire(raw: dict[str, Any]) -> CatalogChange:
    record = {name: _deserializer.deserialize(value) for name, value in raw.items()}
    item = CatalogItem(
        item_id=str(record["item_id"]),
        categories=tuple(str(c) for c in record.get("categories", [])),
        title=None if record.get("title") is None else str(record["title"]),
        attributes={
            str(k): float(v) if isinstance(v, Decimal) else str(v)
            for k, v in record.get("attributes", {}).items()
        },
        available=bool(record.get("available", True)) and not record.get("deleted", False),
        created_at=int(record.get("created_at", 0)),
    )
    return CatalogChange(item, bool(record.get("deleted", False)), int(record.get("updated_at", 0)))


class CatalogStore:
    """Reads and writes catalog items on a low-level DynamoDB client."""

    def __init__(
        self, client: Any, table_name: str, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    ) -> None:
        self._client = client
        self._name = table_name
        self._clock_ms = clock_ms

    def put(self, item: CatalogItem) -> None:
        """Create or replace an item."""
        try:
            self._client.put_item(TableName=self._name, Item=_to_wire(item, self._clock_ms()))
        except Exception as error:
            raise classify(error, "PutItem") from error

    def put_many(self, items: Sequence[CatalogItem]) -> list[str]:
        """Write items with BatchWriteItem; returns the ids still unwritten after retries."""
        now = self._clock_ms()
        pending = [{"PutRequest": {"Item": _to_wire(item, now)}} for item in items]
        for _ in range(BATCH_WRITE_ATTEMPTS):
            if not pending:
                return []
            retry: list[dict[str, Any]] = []
            for start in range(0, len(pending), BATCH_WRITE_ITEMS):
                chunk = pending[start : start + BATCH_WRITE_ITEMS]
                try:
                    response = self._client.batch_write_item(RequestItems={self._name: chunk})
                except Exception as error:
                    boundary = classify(error, "BatchWriteItem")
                    if isinstance(boundary, StoreRejected):
                        raise boundary from error
                    retry.extend(chunk)
                    continue
                retry.extend(response.get("UnprocessedItems", {}).get(self._name, []))
            pending = retry
        return [_deserializer.deserialize(r["PutRequest"]["Item"]["item_id"]) for r in pending]

    def delete(self, item_id: str) -> None:
        """Replace the item by a tombstone (idempotent); readers of the feed drop it."""
        tombstone = CatalogItem(item_id=item_id, available=False)
        try:
            self._client.put_item(
                TableName=self._name, Item=_to_wire(tombstone, self._clock_ms(), deleted=True)
            )
        except Exception as error:
            raise classify(error, "PutItem") from error

    def get(self, item_id: str) -> CatalogItem | None:
        """The item, or None when it does not exist or was deleted."""
        try:
            response = self._client.get_item(TableName=self._name, Key={"item_id": {"S": item_id}})
        except Exception as error:
            raise classify(error, "GetItem") from error
        if "Item" not in response:
            return None
        change = _from_wire(response["Item"])
        return None if change.deleted else change.item

    def changes_since(self, updated_after_ms: int) -> list[CatalogChange]:
        """Every write with ``updated_at`` greater than ``updated_after_ms``, oldest first."""
        changes: list[CatalogChange] = []
        kwargs: dict[str, Any] = {
            "TableName": self._name,
            "IndexName": FEED_INDEX,
            "KeyConditionExpression": "feed = :feed AND updated_at > :after",
            "ExpressionAttributeValues": {":feed": {"S": FEED}, ":after": {"N": str(updated_after_ms)}},
        }
        while True:
            try:
                response = self._client.query(**kwargs)
            except Exception as error:
                raise classify(error, "Query") from error
            changes.extend(_from_wire(raw) for raw in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return changes
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def latest(changes: Iterable[CatalogChange]) -> dict[str, CatalogChange]:
    """The newest change per item id."""
    newest: dict[str, CatalogChange] = {}
    for change in changes:
        current = newest.get(change.item.item_id)
        if current is None or change.updated_at >= current.updated_at:
            newest[change.item.item_id] = change
    return newest
